"""Identical reports arriving at the same instant, for real, on PostgreSQL."""

import threading

import pytest
from django.db import connections
from rest_framework.test import APIClient

from bugtracker.services import api_key_create
from dedup.models import DedupGroup
from reports.claims import report_resolve
from reports.models import BugReport, BugReportEvent
from reports.services import report_create

THREADS = 8
ROUNDS = 4

TRACE = """Traceback (most recent call last):
  File "/srv/app/server/app.py", line 132, in dispatch
    return handler(request)
  File "/srv/app/server/search/ranking.py", line 145, in score_{round}
    result = compute(payload)
ZeroDivisionError: division by zero
"""

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(work, count=THREADS) -> list:
    """Run `work(i)` in `count` threads released together; returns results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as error:  # reported by the assertions below
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_identical_submissions_at_the_same_instant_make_one_canonical():
    _, key = api_key_create(name="racer", role="reporter")

    for round_ in range(ROUNDS):
        body = {
            "title": "Score failed",
            "stack_trace": TRACE.format(round=round_),
            "component": "search",
        }

        def submit(_i, body=body):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            return client.post("/api/bug-reports", body, format="json")

        responses = race(submit)
        assert all(getattr(r, "status_code", r) == 201 for r in responses), responses
        ids = {r.json()["id"] for r in responses}
        reports = BugReport.objects.filter(pk__in=ids)
        canonicals = [r for r in reports if r.duplicate_of_id is None]
        assert len(ids) == THREADS
        assert len(canonicals) == 1
        canonical = canonicals[0]
        assert {r.duplicate_of_id for r in reports if r.pk != canonical.pk} == {canonical.pk}
        group = DedupGroup.objects.get(fingerprint=canonical.fingerprint, active=True)
        assert group.canonical_id == canonical.pk
        assert group.occurrences == THREADS
        assert {r.dedup_group_id for r in reports} == {group.pk}


def test_concurrent_regressions_reopen_once_and_count_every_occurrence():
    data = {
        "title": "Score failed",
        "stack_trace": TRACE.format(round="r"),
        "release_sha": "a" * 40,
    }
    canonical = report_create(actor="t", data=data)
    report_resolve(report_id=canonical.pk, actor="fixer", claim_token=None, is_admin=True)

    results = race(lambda i: report_create(actor=f"t{i}", data={**data, "release_sha": "b" * 40}))

    assert not [r for r in results if isinstance(r, Exception)], results
    canonical.refresh_from_db()
    assert canonical.status == "triaged"
    assert BugReportEvent.objects.filter(report=canonical, kind="regressed").count() == 1
    assert DedupGroup.objects.get(canonical=canonical).occurrences == THREADS + 1
    assert BugReport.objects.filter(duplicate_of=canonical).count() == THREADS


def test_concurrent_duplicates_of_a_live_group_each_count_once():
    data = {"title": "Score failed", "stack_trace": TRACE.format(round="live")}
    canonical = report_create(actor="t", data=data)
    releases = ["c" * 40, "d" * 40]

    def submit(i):
        return report_create(actor=f"t{i}", data={**data, "release_sha": releases[i % 2]})

    results = race(submit)

    assert not [r for r in results if isinstance(r, Exception)], results
    group = DedupGroup.objects.get(canonical=canonical)
    assert group.occurrences == THREADS + 1
    assert sorted(group.releases_seen) == releases
    duplicates = BugReport.objects.filter(duplicate_of=canonical)
    assert {r.dedup_group_id for r in duplicates} == {group.pk}
    assert duplicates.count() == THREADS
    linked = BugReportEvent.objects.filter(report__in=duplicates, kind="duplicate_linked")
    # Each duplicate saw its own occurrence number: 2, 3, … THREADS + 1.
    assert sorted(e.data["occurrences"] for e in linked) == list(range(2, THREADS + 2))
    assert {e.data["canonical"] for e in linked} == {str(canonical.pk)}
