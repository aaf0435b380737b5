"""The enrichment job: reports missing a release get the one live in their environment then."""

import logging
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, close_old_connections, connection

from reports.models import BugReport, BugReportEvent
from reports.services import report_update
from telemetry import services
from telemetry.models import Release
from telemetry.selectors import release_at
from telemetry.services import enrich_missing_releases, release_record
from tests.factories import make_report

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def deploy(sha, environment, at, version=""):
    return release_record(
        sha=sha, version=version, environment=environment, deployed_at=at, actor="deployer"
    )


@pytest.fixture
def deployments():
    """production: a@T0, b@T0+2h, c@T0+5h; staging: s1@T0+1h, s2@T0+3h."""
    return {
        "a": deploy("aaaa0001", "production", T0, "1.0"),
        "b": deploy("bbbb0002", "production", T0 + 2 * H, "1.1"),
        "c": deploy("cccc0003", "production", T0 + 5 * H, "1.2"),
        "s1": deploy("5555a001", "staging", T0 + 1 * H, "1.1-rc1"),
        "s2": deploy("5555a002", "staging", T0 + 3 * H, "1.2-rc1"),
    }


def report_at(environment, at, **fields):
    return make_report(environment=environment, created_at=at, **fields)


def sha_of(report):
    return BugReport.objects.get(pk=report.pk).release_sha


def enriched_events(report):
    return list(BugReportEvent.objects.filter(report_id=report.pk, kind="enriched"))


def test_release_at_picks_the_latest_deployment_not_after_the_time(deployments):
    assert release_at(environment="production", at=T0 + 90 * timedelta(minutes=1)).sha == "aaaa0001"
    assert release_at(environment="production", at=T0 + 2 * H).sha == "bbbb0002"  # inclusive
    assert release_at(environment="production", at=T0 + 10 * H).sha == "cccc0003"
    assert release_at(environment="staging", at=T0 + 4 * H).sha == "5555a002"
    assert release_at(environment="production", at=T0 - H) is None
    assert release_at(environment="dev", at=T0 + 4 * H) is None
    assert release_at(environment=None, at=T0 + 4 * H) is None


def test_each_report_gets_the_release_of_its_environment_at_its_time(deployments):
    cases = {
        "prod after a": (report_at("production", T0 + 1 * H), "aaaa0001"),
        "prod exactly at b": (report_at("production", T0 + 2 * H), "bbbb0002"),
        "prod between b and c": (report_at("production", T0 + 4 * H), "bbbb0002"),
        "prod after c": (report_at("production", T0 + 9 * H), "cccc0003"),
        "staging after s1": (report_at("staging", T0 + 2 * H), "5555a001"),
        "staging after s2": (report_at("staging", T0 + 4 * H), "5555a002"),
        "prod before any deploy": (report_at("production", T0 - H), None),
        "staging before any deploy": (report_at("staging", T0 + 30 * timedelta(minutes=1)), None),
        "unknown environment": (report_at("dev", T0 + 4 * H), None),
        "no environment": (report_at(None, T0 + 4 * H), None),
        "blank release": (report_at("production", T0 + 1 * H, release_sha=""), "aaaa0001"),
    }

    filled = enrich_missing_releases()

    assert filled == sum(1 for _, want in cases.values() if want)
    assert {name: sha_of(r) or None for name, (r, _) in cases.items()} == {
        name: want for name, (_, want) in cases.items()
    }


def test_a_report_with_a_release_is_left_alone(deployments):
    report = report_at("production", T0 + 1 * H, release_sha="feed1234")
    assert enrich_missing_releases() == 0
    assert sha_of(report) == "feed1234"
    assert enriched_events(report) == []


def test_enrichment_writes_an_event_bumps_the_version_and_notes_the_release(deployments):
    report = report_at("production", T0 + 3 * H, telemetry={"method": "POST"})
    enrich_missing_releases()

    stored = BugReport.objects.get(pk=report.pk)
    assert stored.version == report.version + 1
    assert stored.telemetry["method"] == "POST"
    assert stored.telemetry["release"] == {
        "sha": "bbbb0002",
        "version": "1.1",
        "environment": "production",
        "deployed_at": (T0 + 2 * H).isoformat(),
        "source": "registry",
    }
    (event,) = enriched_events(report)
    assert event.actor == "telemetry"
    assert event.data["to"] == "bbbb0002"
    assert event.data["from"] is None
    assert event.data["release_id"] == deployments["b"].pk


def test_the_latest_recorded_wins_among_deployments_at_the_same_instant():
    deploy("1111aaaa", "production", T0)
    second = deploy("2222bbbb", "production", T0)
    report = report_at("production", T0 + H)
    enrich_missing_releases()
    assert sha_of(report) == second.sha


def test_enrichment_is_idempotent(deployments):
    reports = [report_at("production", T0 + n * H) for n in range(1, 4)]
    assert enrich_missing_releases() == 3
    assert enrich_missing_releases() == 0
    assert all(len(enriched_events(r)) == 1 for r in reports)


@pytest.mark.parametrize("batch_size", [1, 2, 7, 500])
def test_batches_of_any_size_fill_every_report_once(deployments, batch_size):
    fillable = [report_at("production", T0 + n * timedelta(minutes=17)) for n in range(1, 8)]
    unfillable = [report_at("production", T0 - n * H) for n in range(1, 4)]
    same_instant = [report_at("staging", T0 + 4 * H) for _ in range(3)]

    assert enrich_missing_releases(batch_size=batch_size) == len(fillable) + len(same_instant)
    assert all(sha_of(r) for r in fillable + same_instant)
    assert not any(sha_of(r) for r in unfillable)


def test_a_release_recorded_later_fills_older_reports_on_the_next_run():
    report = report_at("canary", T0 + H)
    assert enrich_missing_releases() == 0
    deploy("abcdef12", "canary", T0)
    assert enrich_missing_releases() == 1
    assert sha_of(report) == "abcdef12"


def test_enrichment_query_count_does_not_grow_per_batch(deployments, django_assert_max_num_queries):
    for n in range(10):
        report_at("production", T0 + n * H)
    # candidates, releases, the batch transaction; then per report a savepoint, its group
    # locked and given the release, the compare-and-set update, the event and the savepoint
    # release; then the empty next page
    with django_assert_max_num_queries(4 + 10 * 6):
        assert enrich_missing_releases(batch_size=100) == 10


def test_a_report_changed_meanwhile_is_filled_from_a_fresh_read(deployments):
    report = report_at("production", T0 + H)
    stale = services._missing_release().get(pk=report.pk)
    report_update(report_id=report.pk, actor="agent", data={"title": "Renamed meanwhile"})

    assert services._fill_one(stale, deployments["a"]) is True
    stored = BugReport.objects.get(pk=report.pk)
    assert (stored.title, stored.release_sha) == ("Renamed meanwhile", "aaaa0001")


def test_a_report_filled_meanwhile_is_not_filled_twice(deployments):
    report = report_at("production", T0 + H)
    stale = services._missing_release().get(pk=report.pk)
    assert enrich_missing_releases() == 1

    assert services._fill_one(stale, deployments["a"]) is False
    assert len(enriched_events(report)) == 1


def test_a_failed_write_is_logged_and_leaves_the_report_untouched(deployments, monkeypatch, caplog):
    report = report_at("production", T0 + H)
    other = report_at("production", T0 + 2 * H)

    def broken_event_write(**kwargs):
        if kwargs["report"].pk == report.pk:
            raise DatabaseError("disk full")
        return original(**kwargs)

    original = services.write_event
    monkeypatch.setattr(services, "write_event", broken_event_write)
    with caplog.at_level(logging.ERROR, logger="bugtracker.writes"):
        assert enrich_missing_releases() == 1

    assert sha_of(report) is None  # the compare-and-set rolled back with the failed event
    assert sha_of(other) == "bbbb0002"
    (line,) = [r for r in caplog.records if r.name == "bugtracker.writes"]
    assert line.levelname == "ERROR"
    assert line.report_id == str(report.pk)
    assert "disk full" in line.getMessage()
    assert line.payload == {"release_id": deployments["a"].pk, "release_sha": "aaaa0001"}


def test_the_command_runs_once_and_says_how_many_it_filled(deployments):
    report_at("production", T0 + H)
    report_at("staging", T0 + 4 * H)
    out = StringIO()
    call_command("enrich_telemetry", "--batch-size", "1", stdout=out)
    assert "Filled release_sha on 2 reports." in out.getvalue()

    out = StringIO()
    call_command("enrich_telemetry", stdout=out)
    assert "Filled release_sha on 0 reports." in out.getvalue()


def test_the_command_refuses_a_bad_batch_size():
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("enrich_telemetry", "--batch-size", "0", stdout=StringIO())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_fill_each_report_exactly_once():
    deploy("aaaa0001", "production", T0)
    deploy("5555a001", "staging", T0)
    reports = [
        report_at("production" if n % 2 else "staging", T0 + n * timedelta(minutes=1))
        for n in range(1, 61)
    ]
    results, errors = [], []
    start = threading.Barrier(4)

    def run():
        try:
            start.wait()
            results.append(enrich_missing_releases(batch_size=7))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    close_old_connections()

    assert errors == []
    assert sum(results) == len(reports)
    counts = {r.pk: len(enriched_events(r)) for r in reports}
    assert set(counts.values()) == {1}
    assert Release.objects.count() == 2


def test_imported_legacy_reports_without_a_release_get_one_and_their_group_sees_it():
    deploy("a" * 40, "prod", datetime(2020, 1, 1, tzinfo=UTC), "1")
    imported = make_report(environment="prod", legacy_id="br-1-0001")
    given = make_report(environment="prod", legacy_id="br-1-0002", release_sha="f" * 40)
    live = make_report(environment="prod")
    assert enrich_missing_releases() == 2
    stored = BugReport.objects.select_related("dedup_group").get(pk=imported.pk)
    assert stored.release_sha == "a" * 40
    assert stored.dedup_group.releases_seen == ["a" * 40]
    (event,) = enriched_events(imported)
    assert (event.data["from"], event.data["to"]) == (None, "a" * 40)
    # A release the file gave is never overwritten, and gets no event.
    assert BugReport.objects.get(pk=given.pk).release_sha == "f" * 40
    assert enriched_events(given) == []
    assert BugReport.objects.get(pk=live.pk).release_sha == "a" * 40
