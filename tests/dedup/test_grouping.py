"""Grouping at submission: duplicates, the window, regressions and stale events, imports."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dedup.grouping import report_group
from dedup.models import ClientFingerprint, DedupGroup
from reports.claims import report_resolve
from reports.models import BugReport, BugReportEvent
from reports.selectors import report_list
from reports.services import report_build, report_create, report_transition
from telemetry.models import Release

pytestmark = pytest.mark.django_db

TRACE = """Traceback (most recent call last):
  File "/srv/app/server/app.py", line {line}, in dispatch
    return handler(request)
  File "/srv/app/server/routes/generation.py", line 136, in build_job
    result = compute(payload)
  File "/usr/lib/python3.11/site-packages/lib/core.py", line 532, in compute
    raise err
KeyError: '{key}'
"""
OTHER_TRACE = TRACE.replace("build_job", "cancel_job")


def submit(*, line=132, key="prompt", created_at=None, **fields):
    data = {
        "title": f"KeyError in build_job ({key})",
        "stack_trace": TRACE.format(line=line, key=key),
        "component": "image-gen",
        "route": "/api/generate",
    }
    data.update(fields)
    return report_create(actor="tests", data=data, created_at=created_at)


def refreshed(report):
    report.refresh_from_db()
    return report


def resolve(report, **kwargs):
    return report_resolve(
        report_id=report.pk, actor="fixer", claim_token=None, is_admin=True, **kwargs
    )


def kinds(report):
    return list(BugReportEvent.objects.filter(report=report).values_list("kind", flat=True))


# Duplicates ---------------------------------------------------------------------------------


def test_the_same_error_becomes_a_duplicate_of_the_first_report():
    first = submit(trace_id="a" * 32, request_id="r-1", release_sha="1" * 40)
    second = submit(line=140, key="seed", trace_id="b" * 32, request_id="r-2", release_sha="2" * 40)

    assert first.duplicate_of_id is None
    assert second.duplicate_of_id == first.pk
    assert second.fingerprint == first.fingerprint
    assert second.dedup_group_id == first.dedup_group_id
    group = DedupGroup.objects.get(pk=first.dedup_group_id)
    assert group.canonical_id == first.pk
    assert group.occurrences == 2 == report_list().get(pk=second.pk).group_occurrences
    assert (group.first_seen, group.last_seen) == (first.created_at, second.created_at)
    assert group.releases_seen == ["1" * 40, "2" * 40]
    assert group.algorithm_version == first.fingerprint_version == 1
    assert kinds(second) == ["created", "duplicate_linked"]
    linked = BugReportEvent.objects.get(report=second, kind="duplicate_linked")
    assert linked.data == {
        "canonical": str(first.pk),
        "group": str(group.pk),
        "fingerprint": first.fingerprint,
        "occurrences": 2,
    }
    assert linked.message == f"Duplicate of {first.pk} (occurrence 2)."
    assert linked.created_at == second.created_at
    # Grouping is part of the submission: the new report is still at its first version.
    assert refreshed(second).version == 1
    assert kinds(first) == ["created"]


def test_a_different_error_or_place_is_a_different_group():
    first = submit()
    assert submit(stack_trace=OTHER_TRACE.format(line=1, key="x")).duplicate_of_id is None
    assert submit(component="billing").duplicate_of_id is None
    assert submit(route="/api/upload").duplicate_of_id is None
    assert submit(route="/api/generate/").duplicate_of_id == first.pk
    assert DedupGroup.objects.count() == 4


def test_reports_without_a_trace_group_by_masked_title_component_and_route():
    first = submit(
        stack_trace="", title="Upload of 'cat.png' failed after 30s", route="/api/images/12"
    )
    second = submit(
        stack_trace="", title="Upload of 'dog.jpg' failed after 2s", route="/api/images/99"
    )
    third = submit(
        stack_trace="", title="Download of 'dog.jpg' failed after 2s", route="/api/images/99"
    )
    assert second.duplicate_of_id == first.pk
    assert third.duplicate_of_id is None


def test_duplicates_never_chain_and_grouping_twice_counts_once():
    first = submit()
    reports = [submit(line=100 + n) for n in range(5)]
    assert {r.duplicate_of_id for r in reports} == {first.pk}
    assert not BugReport.objects.filter(duplicate_of__duplicate_of__isnull=False).exists()
    report_group(report=refreshed(reports[0]), actor="again")
    assert DedupGroup.objects.get().occurrences == 6


def test_a_client_fingerprint_groups_what_the_client_says():
    first = report_create(
        actor="t", data={"title": "A"}, client_fingerprint=["checkout", "{{ default }}"]
    )
    second = report_create(
        actor="t", data={"title": "A"}, client_fingerprint=["checkout", "{{default}}"]
    )
    plain = report_create(actor="t", data={"title": "A"})
    other = report_create(
        actor="t", data={"title": "B"}, client_fingerprint=["checkout", "{{ default }}"]
    )
    assert second.duplicate_of_id == first.pk
    assert plain.duplicate_of_id is None
    assert other.duplicate_of_id is None
    assert ClientFingerprint.objects.get(report=first).parts == ["checkout", "{{ default }}"]
    assert DedupGroup.objects.get(canonical=first).inputs["kind"] == "client"


def test_a_report_created_as_a_duplicate_joins_its_canonicals_group():
    canonical = submit()
    unrelated = report_create(actor="t", data={"title": "Other thing", "duplicate_of": canonical})
    assert unrelated.duplicate_of_id == canonical.pk
    assert unrelated.dedup_group_id == canonical.dedup_group_id
    assert DedupGroup.objects.get(pk=canonical.dedup_group_id).occurrences == 2


# The window ---------------------------------------------------------------------------------


def test_an_occurrence_after_the_window_starts_a_new_group(settings):
    settings.DEDUP_WINDOW_DAYS = 30
    now = timezone.now()
    old = submit(created_at=now - timedelta(days=45))
    recent_enough = submit(created_at=now - timedelta(days=16))
    assert recent_enough.duplicate_of_id == old.pk  # 29 days after the last occurrence

    fresh = submit(created_at=now)  # 16 days after the last one: still the same incident
    assert fresh.duplicate_of_id == old.pk

    lapsed = submit(created_at=now + timedelta(days=31))
    assert lapsed.duplicate_of_id is None
    old_group = DedupGroup.objects.get(pk=old.dedup_group_id)
    new_group = DedupGroup.objects.get(pk=lapsed.dedup_group_id)
    assert (old_group.active, old_group.occurrences) == (False, 3)
    assert (new_group.active, new_group.occurrences, new_group.canonical_id) == (True, 1, lapsed.pk)
    assert submit(created_at=now + timedelta(days=32)).duplicate_of_id == lapsed.pk


def test_imports_use_their_own_timestamps_and_are_not_split_by_gaps(settings):
    settings.DEDUP_WINDOW_DAYS = 30
    years_ago = timezone.now() - timedelta(days=800)

    def imported(days, legacy_id):
        report = report_build(
            data={
                "title": "KeyError in build_job",
                "stack_trace": TRACE.format(line=days, key="k"),
                "status": "closed",
                "legacy_id": legacy_id,
                "created_at": years_ago + timedelta(days=days),
            }
        )
        report.save(force_insert=True)
        report_group(report=report, actor="import")
        return refreshed(report)

    first, second, third = imported(0, "l-1"), imported(5, "l-2"), imported(200, "l-3")
    assert second.duplicate_of_id == first.pk and third.duplicate_of_id == first.pk
    group = DedupGroup.objects.get()
    assert (group.first_seen, group.last_seen) == (first.created_at, third.created_at)
    assert group.occurrences == 3
    # Never reopened, statuses as the files said.
    assert {r.status for r in BugReport.objects.all()} == {"closed"}
    assert not BugReportEvent.objects.filter(kind="regressed").exists()
    assert (
        BugReportEvent.objects.get(report=third, kind="duplicate_linked").created_at
        == third.created_at
    )


# Regressions ------------------------------------------------------------------------------


def test_a_new_release_reopens_a_resolved_canonical():
    canonical = submit(release_sha="a" * 40)
    resolve(canonical, resolved_in_release="b" * 40)
    occurrence = submit(release_sha="c" * 40)

    canonical = refreshed(canonical)
    assert canonical.status == "triaged"
    assert canonical.resolved_at is None
    regressed = BugReportEvent.objects.get(report=canonical, kind="regressed")
    assert regressed.data["report"] == str(occurrence.pk)
    assert regressed.data["release"] == "c" * 40
    assert (regressed.data["from"], regressed.data["to"]) == ("resolved", "triaged")
    assert occurrence.status == "new"
    assert DedupGroup.objects.get().occurrences == 2


def test_closed_canonicals_reopen_too_and_an_unknown_release_is_a_regression():
    canonical = submit()
    report_transition(report_id=canonical.pk, to_status="closed", actor="a")
    submit(release_sha=None)
    assert refreshed(canonical).status == "triaged"


@pytest.mark.parametrize(
    "why", ["seen_before_resolution", "resolved_in_release", "deployed_before_resolution"]
)
def test_stale_occurrences_are_only_counted(why):
    old_release, fixed_release = "a" * 40, "f" * 40
    canonical = submit(release_sha=old_release, environment="production")
    if why == "deployed_before_resolution":
        Release.objects.create(
            sha="d" * 40, environment="staging", deployed_at=timezone.now() - timedelta(hours=1)
        )
    resolve(canonical, resolved_in_release=fixed_release)
    release = {
        "seen_before_resolution": old_release,
        "resolved_in_release": fixed_release,
        "deployed_before_resolution": "d" * 40,
    }[why]
    stale = submit(release_sha=release, environment="production")

    canonical = refreshed(canonical)
    assert canonical.status == "resolved"
    assert canonical.resolved_at is not None
    assert not BugReportEvent.objects.filter(kind="regressed").exists()
    group = DedupGroup.objects.get()
    assert group.occurrences == 2
    assert stale.duplicate_of_id == canonical.pk
    assert BugReportEvent.objects.get(report=stale, kind="duplicate_linked").data["stale"] == why
    # An open duplicate does not dangle under a fixed canonical: it follows it.
    assert refreshed(stale).status == "resolved"


def test_a_release_deployed_after_the_resolution_is_a_regression():
    canonical = submit(release_sha="a" * 40)
    resolve(canonical)
    Release.objects.create(sha="e" * 40, environment="production", deployed_at=timezone.now())
    submit(release_sha="e" * 40)
    assert refreshed(canonical).status == "triaged"


def test_a_release_seen_only_after_a_regression_is_stale_after_the_next_fix():
    canonical = submit(release_sha="a" * 40)
    resolve(canonical)
    submit(release_sha="b" * 40)  # regression in b
    assert refreshed(canonical).status == "triaged"
    resolve(canonical)
    submit(release_sha="b" * 40)  # b was seen before this resolution
    assert refreshed(canonical).status == "resolved"
    assert BugReportEvent.objects.filter(kind="regressed").count() == 1


def test_short_release_ids_match_their_full_sha():
    canonical = submit(release_sha="a" * 40)
    resolve(canonical, resolved_in_release="1234567890abcdef" + "0" * 24)
    submit(release_sha="1234567890ab")
    assert refreshed(canonical).status == "resolved"


def test_resolving_the_canonical_resolves_its_open_duplicates():
    canonical = submit()
    duplicates = [submit(line=n) for n in range(3)]
    resolve(canonical)
    assert {refreshed(d).status for d in duplicates} == {"resolved"}
    assert all("resolved" in kinds(d) for d in duplicates)
