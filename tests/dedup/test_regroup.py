"""manage.py dedup_regroup: recomputing groups after a change to the fingerprint rules."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dedup.curation import report_merge, report_split
from dedup.models import ClientFingerprint, DedupGroup
from reports.models import BugReport
from reports.services import report_create

pytestmark = pytest.mark.django_db

TRACE = """Traceback (most recent call last):
  File "/srv/app/server/{module}.py", line {line}, in {function}
    result = compute(payload)
TimeoutError: upstream model timed out after 30s
"""


def submit(function="run_job", line=10, client_fingerprint=None):
    data = {
        "title": f"TimeoutError in {function}",
        "stack_trace": TRACE.format(module=f"workers/{function}", function=function, line=line),
        "component": "workers",
    }
    return report_create(actor="t", data=data, client_fingerprint=client_fingerprint)


def regroup(*args) -> str:
    out = StringIO()
    call_command("dedup_regroup", *args, stdout=out)
    return out.getvalue()


def canonical_of(report) -> str:
    report.refresh_from_db()
    return report.duplicate_of_id or report.pk


def snapshot():
    return sorted(
        BugReport.objects.values_list(
            "pk", "duplicate_of_id", "dedup_group_id", "fingerprint", "version"
        )
    )


def forget_old_rules():
    """The reports were grouped by rules that no longer hold (here: fingerprints sent by a
    client that the new rules would not have used)."""
    ClientFingerprint.objects.all().delete()


def test_reports_the_old_rules_split_apart_are_grouped_and_dry_run_changes_nothing():
    reports = [submit(line=n, client_fingerprint=[f"old-rule-{n}"]) for n in range(4)]
    other = submit(function="cancel_job", client_fingerprint=["old-rule-x"])
    assert DedupGroup.objects.count() == 5
    forget_old_rules()
    before = snapshot()

    output = regroup("--dry-run")
    assert "3 reports would move" in output
    assert "5 fingerprints changed" in output
    assert snapshot() == before

    output = regroup("--batch-size", "2")
    assert "3 reports moved" in output
    assert {canonical_of(r) for r in reports} == {reports[0].pk}
    assert canonical_of(other) == other.pk
    live = DedupGroup.objects.get(canonical=reports[0])
    assert (live.occurrences, live.active) == (4, True)
    assert live.fingerprint == BugReport.objects.get(pk=reports[0].pk).fingerprint
    assert not BugReport.objects.filter(duplicate_of__duplicate_of__isnull=False).exists()
    # Everything is where the current rules put it: a second run moves nothing.
    assert "0 fingerprints changed" in regroup()
    # New occurrences use the recomputed group.
    assert submit(line=99).duplicate_of_id == reports[0].pk


def test_reports_the_old_rules_lumped_together_are_split_by_their_fingerprint():
    a = submit(function="run_job", client_fingerprint=["everything"])
    a2 = submit(function="run_job", line=50, client_fingerprint=["everything"])
    b = submit(function="cancel_job", client_fingerprint=["everything"])
    b2 = submit(function="cancel_job", line=60, client_fingerprint=["everything"])
    assert {canonical_of(r) for r in (a, a2, b, b2)} == {a.pk}
    forget_old_rules()

    assert "2 reports moved" in regroup()
    assert canonical_of(a2) == a.pk
    assert canonical_of(b) == b.pk
    assert canonical_of(b2) == b.pk
    assert DedupGroup.objects.get(canonical=a).occurrences == 2
    assert DedupGroup.objects.get(canonical=b).occurrences == 2
    assert submit(function="cancel_job", line=1).duplicate_of_id == b.pk


def test_merges_and_splits_made_by_hand_stay():
    a = submit(function="run_job")
    b = submit(function="cancel_job")
    s = submit(function="run_job", line=77)
    report_merge(report_id=a.pk, into_id=b.pk, actor="admin")
    report_split(report_id=s.pk, actor="admin")
    # A rule change that recomputes everything (same result, new version).
    BugReport.objects.update(fingerprint_version=0)

    output = regroup()
    assert "0 reports moved" in output
    assert canonical_of(a) == b.pk
    assert canonical_of(s) == s.pk
    assert set(BugReport.objects.values_list("fingerprint_version", flat=True)) == {1}
    assert submit(function="run_job", line=5).duplicate_of_id == s.pk


def test_reports_that_were_never_grouped_get_grouped():
    first, second = submit(), submit(line=20)
    BugReport.objects.update(duplicate_of=None, dedup_group=None, fingerprint=None)
    DedupGroup.objects.all().delete()

    assert "1 reports moved" in regroup()
    assert canonical_of(second) == first.pk


def test_a_bad_batch_size_is_refused():
    with pytest.raises(CommandError):
        regroup("--batch-size", "0")
