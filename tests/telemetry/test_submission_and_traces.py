"""Submissions inherit the request's ids; reports are found by trace."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from reports.models import BugReport
from tests.conftest import THROTTLE_QUERIES
from tests.factories import make_report

pytestmark = pytest.mark.django_db

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
RELEASE = "c0ffee" * 6 + "abcd"


def submit(client, body, **headers):
    response = client.post("/api/bug-reports", body, format="json", **headers)
    assert response.status_code == 201, response.json()
    return response.json()


@override_settings(RELEASE_SHA=RELEASE)
def test_a_submission_without_ids_takes_them_from_its_request(reporter_client):
    report = submit(
        reporter_client,
        {"title": "Checkout fails"},
        HTTP_TRACEPARENT=TRACEPARENT,
        HTTP_X_REQUEST_ID="req-abc",
        HTTP_USER_AGENT="shop-frontend/3.1",
    )
    assert (report["trace_id"], report["request_id"], report["release_sha"]) == (
        TRACE,
        "req-abc",
        RELEASE,
    )
    assert report["telemetry"] == {
        "method": "POST",
        "path": "/api/bug-reports",
        "user_agent": "shop-frontend/3.1",
    }


@override_settings(RELEASE_SHA=RELEASE)
def test_the_body_wins_over_the_request(reporter_client):
    report = submit(
        reporter_client,
        {
            "title": "Checkout fails",
            "trace_id": OTHER_TRACE,
            "request_id": "from-body",
            "release_sha": "abc1234",
            "telemetry": {"user_agent": "the app itself", "screen": "cart"},
        },
        HTTP_TRACEPARENT=TRACEPARENT,
        HTTP_X_REQUEST_ID="from-header",
        HTTP_USER_AGENT="proxy/1.0",
    )
    assert (report["trace_id"], report["request_id"], report["release_sha"]) == (
        OTHER_TRACE,
        "from-body",
        "abc1234",
    )
    assert report["telemetry"] == {
        "method": "POST",
        "path": "/api/bug-reports",
        "user_agent": "the app itself",
        "screen": "cart",
    }


@override_settings(RELEASE_SHA=RELEASE)
def test_each_field_is_filled_independently(reporter_client):
    report = submit(
        reporter_client,
        {"title": "Partial", "trace_id": OTHER_TRACE},
        HTTP_TRACEPARENT=TRACEPARENT,
        HTTP_X_REQUEST_ID="req-only-header",
    )
    assert (report["trace_id"], report["request_id"], report["release_sha"]) == (
        OTHER_TRACE,
        "req-only-header",
        RELEASE,
    )


def test_the_stored_request_id_is_the_one_echoed(api_client):
    response = api_client.post(
        "/api/bug-reports", {"title": "Anonymous"}, format="json", HTTP_TRACEPARENT="bogus"
    )
    assert response.status_code == 201
    report = response.json()
    assert report["request_id"] == response["X-Request-ID"]
    assert report["trace_id"] is None  # a malformed traceparent is ignored, not an error


# Trace lookup --------------------------------------------------------------------------


def test_trace_lookup_returns_every_report_on_the_trace_oldest_first(agent_client):
    now = timezone.now()
    first = make_report(trace_id=TRACE, created_at=now - timedelta(hours=2))
    second = make_report(trace_id=TRACE, created_at=now - timedelta(hours=1))
    duplicate = make_report(trace_id=TRACE, duplicate_of=first, created_at=now)
    make_report(trace_id=OTHER_TRACE)
    make_report()

    response = agent_client.get(f"/api/telemetry/traces/{TRACE}")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()] == [str(first.pk), str(second.pk), str(duplicate.pk)]
    assert all(r["trace_id"] == TRACE for r in response.json())


def test_trace_lookup_with_a_trailing_slash_and_for_an_unknown_trace(agent_client):
    make_report(trace_id=TRACE)
    assert len(agent_client.get(f"/api/telemetry/traces/{TRACE}/").json()) == 1
    unknown = agent_client.get(f"/api/telemetry/traces/{'1' * 32}")
    assert (unknown.status_code, unknown.json()) == (200, [])


def test_trace_lookup_refuses_an_absurd_id(agent_client):
    response = agent_client.get(f"/api/telemetry/traces/{'a' * 65}")
    assert response.status_code == 400
    assert "trace_id" in response.json()["errors"]


@pytest.mark.parametrize(
    ("client_fixture", "status"), [("api_client", 401), ("reporter_client", 403)]
)
def test_trace_lookup_is_for_agents(request, client_fixture, status):
    client = request.getfixturevalue(client_fixture)
    assert client.get(f"/api/telemetry/traces/{TRACE}").status_code == status


def test_trace_lookup_query_count_does_not_grow_with_reports(
    agent_client, django_assert_max_num_queries
):
    for _ in range(5):
        make_report(trace_id=TRACE)
    with django_assert_max_num_queries(3 + THROTTLE_QUERIES):
        response = agent_client.get(f"/api/telemetry/traces/{TRACE}")
    assert len(response.json()) == 5


def test_the_list_filters_by_trace_id(agent_client):
    on_trace = make_report(trace_id=TRACE)
    make_report(trace_id=OTHER_TRACE)
    response = agent_client.get("/api/bug-reports", {"trace_id": TRACE})
    assert [r["id"] for r in response.json()["results"]] == [str(on_trace.pk)]
    assert BugReport.objects.count() == 2
