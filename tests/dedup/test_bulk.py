"""The bulk grouping pass of backfill_json gives the database report_group would, row for row."""

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from dedup.bulk import legacy_reports_group_bulk
from dedup.curation import report_merge
from dedup.models import DedupGroup
from legacy import backfill as legacy_backfill
from legacy.backfill import Backfill
from legacy.services import legacy_reports_group
from reports.claims import report_resolve
from reports.models import BugReport, BugReportEvent
from reports.services import report_create
from telemetry.models import Release

pytestmark = pytest.mark.django_db

SAMPLE = Path(settings.BASE_DIR) / "tests" / "fixtures" / "legacy-sample" / "reports"

FRAMES = {
    "ValueError": ("billing/invoice.py", "parse_amount"),
    "KeyError": ("jobs/builder.py", "build_job"),
    "TimeoutError": ("jobs/runner.py", "run_job"),
}
RELEASES = [f"{n:x}" * 40 for n in range(1, 6)]  # a few deploys, so releases repeat
START = datetime(2025, 3, 1, tzinfo=UTC)


def trace(error: str, line: int) -> str:
    path, function = FRAMES[error]
    return (
        "Traceback (most recent call last):\n"
        f'  File "/srv/app/server/{path}", line {line}, in {function}\n'
        "    result = compute(payload)\n"
        f"{error}: boom {line}"
    )


def corpus(directory: Path, n: int = 240, seed: int = 3) -> Path:
    """Reports of three errors, some without traces, in every status, releases repeating."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        created = START + timedelta(hours=rng.randrange(24 * 60))
        error = rng.choice([*FRAMES, None])
        status = rng.choice(["open", "triaged", "resolved", "closed", "wontfix", "claimed"])
        record = {
            "id": f"g-{i}",
            "title": f"{error or 'Slow page'} in handler (report {i})",
            "status": status,
            "created_at": created.isoformat(),
            "component": rng.choice(["billing", "jobs"]),
            "route": "/api/checkout",
        }
        if error:
            record["stack_trace"] = trace(error, rng.randrange(10, 90))
        if rng.random() < 0.8:
            record["context"] = {"release": rng.choice(RELEASES)}
        if status == "resolved" and rng.random() < 0.7:
            record["resolved_at"] = (created + timedelta(hours=rng.randrange(1, 200))).isoformat()
        if status in ("closed", "wontfix") and rng.random() < 0.6:
            record["history"] = [
                {
                    "at": (created + timedelta(hours=rng.randrange(1, 300))).isoformat(),
                    "from": "open",
                    "to": status,
                    "by": "alice",
                }
            ]
        records.append(record)
    directory.mkdir(parents=True, exist_ok=True)
    # Files in an order unrelated to creation time.
    (directory / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[::2]))
    (directory / "a.json").write_text(json.dumps(records[1::2]))
    return directory


def existing_state() -> None:
    """What the tracker already holds before the backfill: groups the imports must join."""
    api = report_create(
        actor="api",
        data={
            "title": "ValueError in parse_amount",
            "stack_trace": trace("ValueError", 5),
            "component": "billing",
            "route": "/api/checkout",
            "release_sha": RELEASES[0],
            "created_at": START - timedelta(days=3),
        },
    )
    report_resolve(
        report_id=api.pk,
        actor="admin",
        claim_token=None,
        is_admin=True,
        resolved_in_release=RELEASES[1][:10],
    )
    keep = report_create(
        actor="api",
        data={
            "title": "KeyError in build_job",
            "stack_trace": trace("KeyError", 7),
            "component": "jobs",
            "route": "/api/checkout",
            "created_at": START - timedelta(days=2),
        },
    )
    merged = report_create(
        actor="api",
        data={
            "title": "TimeoutError",
            "stack_trace": trace("TimeoutError", 7),
            "component": "jobs",
            "route": "/api/checkout",
            "created_at": START - timedelta(days=1),
        },
    )
    # TimeoutErrors of the jobs component now go to the KeyError group (a merge by hand).
    report_merge(report_id=merged.pk, into_id=keep.pk, actor="admin")
    for n, sha in enumerate(RELEASES[2:4]):
        Release.objects.create(
            sha=sha, environment="production", deployed_at=START + timedelta(days=10 * n)
        )
    Release.objects.create(sha=RELEASES[4].upper(), environment="staging", deployed_at=START)


def import_ungrouped(path: Path) -> None:
    original = legacy_backfill.legacy_reports_group
    legacy_backfill.legacy_reports_group = lambda **kwargs: 0
    try:
        Backfill([path], batch_size=50).run()
    finally:
        legacy_backfill.legacy_reports_group = original


def snapshot() -> tuple:
    """Groups, links and events, with every random id (groups, reports made through the API)
    replaced by something both runs share: fingerprints, legacy ids, titles."""
    names = {
        str(pk): legacy_id or f"api:{title}"
        for pk, legacy_id, title in BugReport.objects.values_list("pk", "legacy_id", "title")
    }
    groups = {g.pk: g for g in DedupGroup.objects.all()}

    def key(group_id):
        group = groups.get(group_id)
        return None if group is None else (group.fingerprint, names[str(group.canonical_id)])

    def named(text: str) -> str:
        for pk, name in names.items():
            text = text.replace(pk, name)
        for pk in groups:
            text = text.replace(str(pk), repr(key(pk)))
        return text

    reports = sorted(
        (
            names[str(r.pk)],
            r.fingerprint,
            r.fingerprint_version,
            key(r.dedup_group_id),
            names.get(str(r.duplicate_of_id)),
            r.status,
            r.version,
            r.updated_at if r.legacy_id else None,  # API changes are stamped "now"
        )
        for r in BugReport.objects.all()
    )
    group_rows = sorted(
        (
            key(g.pk),
            g.algorithm_version,
            g.occurrences,
            g.first_seen,
            g.last_seen,
            tuple(g.releases_seen),
            g.active,
            key(g.merged_into_id),
            json.dumps(g.inputs, sort_keys=True),
        )
        for g in groups.values()
    )
    events = sorted(
        (
            names[str(e.report_id)],
            e.kind,
            e.actor,
            named(e.message),
            e.created_at,
            named(json.dumps(e.data, sort_keys=True, default=str)),
        )
        for e in BugReportEvent.objects.exclude(
            kind__in=["created", "imported", "merged", "resolved"]
        )
    )
    return reports, group_rows, events


def grouped_both_ways(path: Path, *, with_existing: bool) -> tuple:
    results = []
    for one_by_one in (True, False):
        for model in (BugReportEvent, DedupGroup, Release):
            model.objects.all().delete()
        BugReport.objects.filter(duplicate_of__isnull=False).delete()
        BugReport.objects.all().delete()
        if with_existing:
            existing_state()
        import_ungrouped(path)
        grouped = legacy_reports_group(actor="backfill", one_by_one=one_by_one)
        assert grouped == BugReport.objects.filter(legacy_id__isnull=False).count()
        results.append(snapshot())
    return results


def test_bulk_grouping_equals_report_group_one_by_one_on_the_sample():
    one_by_one, bulk = grouped_both_ways(SAMPLE, with_existing=False)

    assert bulk == one_by_one
    assert sum(1 for r in bulk[0] if r[4] is not None) > 200  # the sample is mostly duplicates


def test_bulk_grouping_equals_report_group_with_merged_resolved_and_registered_releases(tmp_path):
    one_by_one, bulk = grouped_both_ways(corpus(tmp_path / "legacy"), with_existing=True)

    assert bulk == one_by_one
    stale = [json.loads(e[5]).get("stale") for e in bulk[2] if e[1] == "duplicate_linked"]
    # Every stale rule fired somewhere, so each was compared.
    assert {"resolved_in_release", "seen_before_resolution", "deployed_before_resolution"} <= set(
        stale
    )
    statuses = {r[0]: r[5] for r in bulk[0]}
    assert "resolved" in statuses.values()  # nothing was reopened: imports keep their status


def test_chunk_boundaries_do_not_change_the_groups(tmp_path):
    path = corpus(tmp_path / "legacy", n=120)
    existing_state()
    import_ungrouped(path)
    legacy_reports_group_bulk(actor="backfill", chunk_size=7)
    small_chunks = snapshot()
    for model in (BugReportEvent, DedupGroup, Release):
        model.objects.all().delete()
    BugReport.objects.filter(duplicate_of__isnull=False).delete()
    BugReport.objects.all().delete()
    existing_state()
    import_ungrouped(path)

    legacy_reports_group_bulk(actor="backfill", chunk_size=10_000)

    assert snapshot() == small_chunks
