"""`fields=` and `view=compact` on the reports list and detail; paginated events and runs."""

import json

import pytest

from remediation.models import AgentRun
from reports.claims import report_claim
from reports.serializers import COMPACT_FIELDS
from tests.conftest import THROTTLE_QUERIES
from tests.factories import make_report

from .traces import real_report

URL = "/api/bug-reports"
pytestmark = pytest.mark.django_db


def test_fields_picks_top_level_fields_on_list_and_detail_with_id_always(agent_client):
    report = make_report(component="billing", stack_trace="")
    listed = agent_client.get(f"{URL}?fields=title,severity").json()["results"]
    assert [set(row) for row in listed] == [{"id", "title", "severity"}]
    detail = agent_client.get(f"{URL}/{report.pk}?fields=component&fields=status")
    assert detail.status_code == 200
    assert detail.json() == {"id": str(report.pk), "status": "new", "component": "billing"}
    assert detail["ETag"] == f'"{report.version}"'


def test_an_unknown_field_is_a_400_naming_it(agent_client):
    report = make_report()
    for url in (f"{URL}?fields=title,staus", f"{URL}/{report.pk}?fields=title,staus"):
        response = agent_client.get(url)
        assert response.status_code == 400
        assert response["Content-Type"] == "application/problem+json"
        assert "staus" in response.json()["errors"]["fields"][0]


def test_compact_view_shows_the_compact_fields_and_three_repo_hints(agent_client):
    report = real_report(1)
    # Several in-app files, innermost last in the trace.
    trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "/srv/app/pkg/mod{i}.py", line 3, in f{i}\n    x()\n' for i in range(6)
    )
    make_report(title="Deep", stack_trace=trace + "ValueError: no\n")
    rows = agent_client.get(f"{URL}?view=compact&ordering=created_at").json()["results"]
    assert [set(row) for row in rows] == [set(COMPACT_FIELDS)] * 2
    assert rows[0]["id"] == str(report.pk)
    assert rows[1]["repo_hints"] == ["pkg/mod5.py", "pkg/mod4.py", "pkg/mod3.py"]
    detail = agent_client.get(f"{URL}/{report.pk}?view=compact").json()
    assert set(detail) == set(COMPACT_FIELDS)


def test_fields_narrow_the_compact_view_and_cannot_leave_it(agent_client):
    make_report()
    rows = agent_client.get(f"{URL}?view=compact&fields=title").json()["results"]
    assert set(rows[0]) == {"id", "title"}
    response = agent_client.get(f"{URL}?view=compact&fields=description")
    assert response.status_code == 400
    assert "description" in response.json()["errors"]["fields"][0]
    assert agent_client.get(f"{URL}?view=tiny").status_code == 400


def test_a_compact_page_of_fifty_real_reports_with_200_kib_traces_is_under_20000_chars(
    agent_client, django_assert_max_num_queries
):
    for n in range(50):
        real_report(n)
    agent_client.get(f"{URL}?view=compact&page_size=1")  # warm the key lookup
    with django_assert_max_num_queries(2 + THROTTLE_QUERIES):  # key lookup, the page
        response = agent_client.get(f"{URL}?view=compact&page_size=50")
    rows = response.json()["results"]
    assert len(rows) == 50
    assert all(len(row["repo_hints"]) == 2 for row in rows)
    assert len(response.content.decode()) < 20_000
    # The same page in full carries every trace: the compact view is what makes it affordable.
    full = agent_client.get(f"{URL}?page_size=50")
    assert len(full.content.decode()) > 50 * 200 * 1024


def test_a_compact_page_of_claimed_reports_costs_no_query_per_row(
    agent_client, django_assert_max_num_queries
):
    for n in range(6):
        report_claim(report_id=make_report().pk, actor=f"agent-{n}", lease_seconds=600)
    agent_client.get(f"{URL}?view=compact&page_size=1")  # warm the key lookup
    with django_assert_max_num_queries(2 + THROTTLE_QUERIES):  # key lookup, the page
        rows = agent_client.get(f"{URL}?view=compact").json()["results"]
    assert len(rows) == 6
    assert all(row["claim"]["holder"].startswith("agent-") for row in rows)
    assert all(row["claim"]["epoch"] == 1 for row in rows)


def test_fields_pages_keep_their_cursor(agent_client):
    made = [make_report() for _ in range(5)]
    seen, url = [], f"{URL}?fields=title&page_size=2&ordering=created_at"
    while url:
        body = agent_client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert seen == [str(r.pk) for r in made]


def test_events_are_cursor_paginated_oldest_first(agent_client, django_assert_max_num_queries):
    report = make_report()
    for i in range(7):
        agent_client.post(f"{URL}/{report.pk}/events", {"message": f"n{i}"}, format="json")
    seen, url, pages = [], f"{URL}/{report.pk}/events?page_size=3", 0
    while url:
        # Key lookup, the report's existence, the page: never a query per event.
        with django_assert_max_num_queries(3 + THROTTLE_QUERIES):
            body = agent_client.get(url).json()
        seen += [(e["kind"], e["message"]) for e in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == [("created", seen[0][1])] + [("agent_log", f"n{i}") for i in range(7)]
    assert agent_client.get(f"{URL}/{report.pk}/events?page_size=0").status_code == 400
    assert agent_client.get(f"{URL}/{report.pk}/events?cursor=zz").status_code == 400


def test_runs_are_cursor_paginated_oldest_first(agent_client, django_assert_max_num_queries):
    report = make_report()
    for attempt in range(1, 6):
        AgentRun.objects.create(report=report, attempt=attempt, runner="w", outcome="failed")
    first = agent_client.get(f"{URL}/{report.pk}/runs?page_size=2").json()
    with django_assert_max_num_queries(3 + THROTTLE_QUERIES):
        second = agent_client.get(first["next"]).json()
    assert [r["attempt"] for r in first["results"] + second["results"]] == [1, 2, 3, 4]
    assert json.loads(json.dumps(second))["previous"] is not None
