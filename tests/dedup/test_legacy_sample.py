"""Grouping the real-shaped legacy sample as backfill_json imports it."""

import json
from collections import Counter, defaultdict
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from dedup.models import DedupGroup
from reports.models import BugReport, BugReportEvent

pytestmark = pytest.mark.django_db

SAMPLE = Path(settings.BASE_DIR) / "tests" / "fixtures" / "legacy-sample"


@pytest.fixture
def imported(settings):
    # Imports are grouped across their whole history, whatever the live window.
    settings.DEDUP_WINDOW_DAYS = 1
    with pytest.raises(SystemExit):  # the sample holds bad files on purpose: exit status 1
        call_command("backfill_json", str(SAMPLE / "reports"), stdout=StringIO())
    expected = json.loads((SAMPLE / "expected.json").read_text())["reports"]
    rows = {row.legacy_id: row for row in BugReport.objects.all()}
    return [(e, rows[e["legacy_id"]]) for e in expected]


def canonical(row) -> str:
    return row.duplicate_of_id or row.pk


def test_the_same_error_component_and_route_share_one_canonical(imported):
    canonicals = defaultdict(set)
    errors_under = defaultdict(set)
    for expected, row in imported:
        canonicals[(expected["error"], row.component, row.route)].add(canonical(row))
        errors_under[canonical(row)].add(expected["error"])
    traced = {k: v for k, v in canonicals.items() if k[0] is not None}
    assert len(traced) == 23  # six errors, seen under several components and routes
    assert all(len(v) == 1 for v in traced.values()), traced
    # Different errors never share a canonical (reports without a trace form their own groups).
    assert all(len(errors) == 1 for errors in errors_under.values())


def test_groups_count_their_reports_and_nothing_was_reopened(imported):
    members = Counter(row.dedup_group_id for _, row in imported)
    for group in DedupGroup.objects.all():
        assert group.occurrences == members[group.pk]
        assert group.first_seen == min(
            r.created_at for _, r in imported if r.dedup_group_id == group.pk
        )
        assert group.canonical.duplicate_of_id is None
    assert not BugReport.objects.filter(duplicate_of__duplicate_of__isnull=False).exists()
    assert not BugReportEvent.objects.filter(kind="regressed").exists()
    assert BugReportEvent.objects.filter(kind="duplicate_linked").count() == sum(
        1 for _, row in imported if row.duplicate_of_id
    )


def test_reports_without_a_trace_group_by_their_masked_title(imported):
    untraced = [row for expected, row in imported if expected["error"] is None]
    assert untraced
    by_key = defaultdict(set)
    for row in untraced:
        title = row.title.rsplit(" (report", 1)[0]
        by_key[(title, row.component, row.route)].add(canonical(row))
    assert all(len(v) == 1 for v in by_key.values())
