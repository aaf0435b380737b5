"""The default agent queries use their indexes on PostgreSQL. benchmarks/list.py measures
them at 1,000,000 reports; here 20,000 of the same generated reports show which index the
planner picks for each, so a changed filter expression or a dropped index that would
silently turn a query into a scan fails a test."""

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from benchmarks.list import ME, generate
from reports.models import BugReport
from tests.conftest import client_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def me(db):
    generate(20_000, bulk_load=False)
    with connection.cursor() as cursor:
        # At 20,000 rows a scan can still be the cheaper guess (at 1,000,000 it never is):
        # price it out, so the check is which index serves the query, not whether one does.
        cursor.execute("SET LOCAL enable_seqscan = off")
    return client_for("agent", ME)


def plan_of(client, path: str) -> str:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    sql = next(q["sql"] for q in captured.captured_queries if 'FROM "bug_reports"' in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall()).split("SubPlan")[0]


# Each default agent query and the index that must serve it.
EXPECTED = {
    "status=open": "bug_reports_queue_idx",
    "sla_breached=true": "bug_reports_queue_idx",
    "assigned_to=me": "bug_reports_assignee_idx",
    "trace_id=0123456789abcdef0123456789abcdef": "bug_reports_trace_idx",
    "q=token+43117": "bug_reports_title_trgm_idx",
    "q=TimeoutError": "bug_reports_priority_idx",
}


def test_the_default_agent_queries_use_their_indexes(me):
    # One generated table for every query: the data takes longer to make than to ask.
    misses = {}
    for query, index in EXPECTED.items():
        plan = plan_of(me, f"/api/bug-reports?{query}")
        if index not in plan or "Seq Scan on bug_reports" in plan:
            misses[query] = plan
    assert not misses, "\n\n".join(f"{q} (wants {EXPECTED[q]}):\n{p}" for q, p in misses.items())

    page = me.get("/api/bug-reports?status=open&page_size=300").json()
    for _ in range(2):  # 900 reports deep
        page = me.get(page["next"].split("testserver", 1)[1]).json()
    plan = plan_of(me, page["next"].split("testserver", 1)[1])
    assert "bug_reports_queue_idx" in plan, plan
    assert "Index Cond: (ROW(severity_rank, sla_due_at, created_at, id) >" in plan, plan

    # The context bundle reads a canonical's latest duplicates through their index.
    canonical = (
        BugReport.objects.filter(duplicate_of__isnull=True)
        .annotate(n=Count("duplicates"))
        .order_by("-n")
        .first()
    )
    assert canonical.n > 1
    with CaptureQueriesContext(connection) as captured:
        assert me.get(f"/api/bug-reports/{canonical.pk}/context").status_code == 200
    plans = {}
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute("EXPLAIN " + query["sql"])
            plans[query["sql"]] = "\n".join(row[0] for row in cursor.fetchall())
    (duplicates,) = [plan for sql, plan in plans.items() if sql.startswith("WITH dup")]
    assert "bug_reports_duplicates_idx" in duplicates, duplicates
    # ... and the open reports at its component and route in priority order, off their index
    # (a hot bug's duplicates share both, which tempted the planner to walk the whole queue).
    (place,) = [plan for sql, plan in plans.items() if '"bug_reports"."route" =' in sql]
    assert "bug_reports_place_idx" in place and "Sort" not in place, place
