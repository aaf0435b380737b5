import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from reports.models import BugReport
from tests.conftest import THROTTLE_QUERIES
from tests.factories import make_report

pytestmark = pytest.mark.django_db

URL = "/api/bug-reports"


def problem(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


# Submit -------------------------------------------------------------------------------------


def test_submit_returns_201_location_and_the_report(agent_client):
    response = agent_client.post(
        URL,
        {
            "title": "Checkout fails",
            "severity": "high",
            "component": "billing",
            "metadata": {"a": 1},
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert response["Location"] == f"/api/bug-reports/{body['id']}"
    assert body["status"] == "new"
    assert body["severity"] == "high"
    assert body["version"] == 1
    assert body["claim"] is None
    assert body["sla_breached"] is False
    assert body["occurrences"] >= 1 and body["duplicates_count"] == 0
    assert "claim_token_hash" not in body and "claim_token" not in body
    assert BugReport.objects.get(pk=body["id"]).events.filter(kind="created").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": 5}, "title"),
        ({"title": "x", "severity": "urgent"}, "severity"),
        ({"title": "x", "source": "robot"}, "source"),
        ({"title": "x", "description": "d" * (64 * 1024 + 1)}, "description"),
        ({"title": "x", "stack_trace": "s" * (256 * 1024 + 1)}, "stack_trace"),
        ({"title": "x", "metadata": {"k": "v" * (16 * 1024)}}, "metadata"),
        ({"title": "x", "metadata": [1, 2]}, "metadata"),
        ({"title": "x", "automation_enabled": "maybe"}, "automation_enabled"),
        ({"title": "x", "colour": "red"}, "colour"),
        ({"title": "x", "fingerprint": "not-a-list"}, "fingerprint"),
    ],
)
def test_invalid_submissions_are_400_naming_the_field(agent_client, body, field):
    response = agent_client.post(URL, body, format="json")
    assert field in problem(response, 400)["errors"]
    assert BugReport.objects.count() == 0


def test_invalid_json_is_400(agent_client):
    response = agent_client.post(URL, data='{"title": ', content_type="application/json")
    problem(response, 400)


def test_json_that_is_not_an_object_is_400(agent_client):
    response = agent_client.post(URL, data="[1, 2]", content_type="application/json")
    problem(response, 400)


def test_wrong_content_type_is_415(agent_client):
    response = agent_client.post(
        URL, data="title=x", content_type="application/x-www-form-urlencoded"
    )
    problem(response, 415)


def test_body_over_one_mib_is_413(agent_client):
    body = json.dumps({"title": "x", "description": "d" * (1024 * 1024)})
    response = agent_client.post(URL, data=body, content_type="application/json")
    problem(response, 413)
    assert BugReport.objects.count() == 0


def test_nul_characters_are_refused_not_stored(agent_client):
    response = agent_client.post(
        URL, data='{"title": "a\\u0000b"}', content_type="application/json"
    )
    problem(response, 400)


# Detail, ETag, PATCH ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_paths_work_with_and_without_trailing_slash(agent_client, suffix):
    report = make_report()
    assert agent_client.get(f"{URL}/{report.pk}{suffix}").status_code == 200
    assert agent_client.get(f"{URL}{suffix}").status_code == 200


@pytest.mark.parametrize("bad_id", ["nope", str(uuid.uuid4()), "1", "%00"])
def test_unknown_or_malformed_id_is_404(agent_client, bad_id):
    problem(agent_client.get(f"{URL}/{bad_id}"), 404)


def test_detail_has_etag_with_the_version(agent_client):
    report = make_report()
    response = agent_client.get(f"{URL}/{report.pk}")
    assert response["ETag"] == '"1"'


def test_patch_with_current_if_match_succeeds_and_bumps_etag(agent_client):
    report = make_report()
    response = agent_client.patch(
        f"{URL}/{report.pk}", {"severity": "critical"}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert response.status_code == 200
    assert response["ETag"] == '"2"'
    assert response.json()["severity"] == "critical"


def test_patch_with_stale_if_match_is_412_and_changes_nothing(agent_client):
    report = make_report()
    agent_client.patch(f"{URL}/{report.pk}", {"category": "ui"}, format="json")
    response = agent_client.patch(
        f"{URL}/{report.pk}", {"category": "api"}, format="json", HTTP_IF_MATCH='"1"'
    )
    problem(response, 412)
    report.refresh_from_db()
    assert report.category == "ui"


def test_patch_illegal_transition_is_409(agent_client):
    report = make_report()
    body = problem(
        agent_client.patch(
            f"{URL}/{report.pk}", {"status": "awaiting_verification"}, format="json"
        ),
        409,
    )
    assert "new" in body["detail"]


def test_patch_legal_transition_writes_a_status_event(agent_client):
    report = make_report()
    assert (
        agent_client.patch(f"{URL}/{report.pk}", {"status": "triaged"}, format="json").status_code
        == 200
    )
    kinds = [e["kind"] for e in agent_client.get(f"{URL}/{report.pk}/events").json()["results"]]
    assert kinds == ["created", "status_changed"]


def test_patch_refuses_unknown_and_read_only_fields(agent_client):
    report = make_report()
    response = agent_client.patch(
        f"{URL}/{report.pk}", {"version": 9, "claim_holder": "me"}, format="json"
    )
    assert set(problem(response, 400)["errors"]) == {"version", "claim_holder"}


def test_patch_unknown_report_is_404(agent_client):
    problem(agent_client.patch(f"{URL}/{uuid.uuid4()}", {"severity": "low"}, format="json"), 404)


# Events -------------------------------------------------------------------------------------


def test_events_append_and_read_oldest_first(agent_client):
    report = make_report()
    for message in ("first", "second"):
        response = agent_client.post(
            f"{URL}/{report.pk}/events",
            {"kind": "note", "message": message, "data": {"n": 1}},
            format="json",
        )
        assert response.status_code == 201
        assert response.json()["actor"] == "agent-1"
    history = agent_client.get(f"{URL}/{report.pk}/events").json()["results"]
    assert [e["message"] for e in history[1:]] == ["first", "second"]


def test_event_kind_must_be_a_log_kind(agent_client):
    report = make_report()
    response = agent_client.post(
        f"{URL}/{report.pk}/events", {"kind": "resolved", "message": "x"}, format="json"
    )
    assert "kind" in problem(response, 400)["errors"]


# List and filters ---------------------------------------------------------------------------


def ids(response):
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def test_default_order_is_priority(agent_client):
    low = make_report(severity="low")
    critical = make_report(severity="critical")
    high = make_report(severity="high")
    assert ids(agent_client.get(URL)) == [str(critical.pk), str(high.pk), str(low.pk)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", {"new", "triaged"}),
        ("status=done", {"resolved"}),
        ("status=triaged,resolved", {"triaged", "resolved"}),
        ("severity=high,low", {"high", "low"}),
        ("min_severity=high", {"critical", "high"}),
        ("category=ui", {"ui"}),
        ("component=auth", {"auth"}),
        ("source=agent", {"agent"}),
        ("environment=prod", {"prod"}),
        ("trace_id=t1", {"t1"}),
        ("request_id=r1", {"r1"}),
        ("release_sha=abc", {"abc"}),
        ("automation_enabled=true", {True}),
        ("q=checkout", {"Checkout broken"}),
    ],
)
def test_each_filter(agent_client, query, expected):
    make_report(
        title="Checkout broken",
        severity="critical",
        category="ui",
        component="auth",
        source="agent",
        environment="prod",
        trace_id="t1",
        request_id="r1",
        release_sha="abc",
        automation_enabled=True,
    )
    make_report(title="Other", severity="high", status="triaged")
    make_report(title="Low one", severity="low", status="resolved")
    key = query.split("=")[0]
    field = {"min_severity": "severity", "q": "title", "status": "status"}.get(key, key)
    got = {r[field] for r in agent_client.get(f"{URL}?{query}").json()["results"]}
    assert got == expected


def test_assigned_to_me_none_and_id(agent_client):
    mine = make_report(assignee_id="agent-1")
    theirs = make_report(assignee_id="someone")
    nobody = make_report()
    assert ids(agent_client.get(f"{URL}?assigned_to=me")) == [str(mine.pk)]
    assert ids(agent_client.get(f"{URL}?assigned_to=someone")) == [str(theirs.pk)]
    assert ids(agent_client.get(f"{URL}?assigned_to=none")) == [str(nobody.pk)]


def test_claimed_filter(agent_client):
    claimed = make_report()
    free = make_report()
    assert agent_client.post(f"{URL}/{claimed.pk}/claim", {}, format="json").status_code == 200
    assert ids(agent_client.get(f"{URL}?claimed=true")) == [str(claimed.pk)]
    assert ids(agent_client.get(f"{URL}?claimed=false")) == [str(free.pk)]


def test_created_between_and_sla_breached(agent_client):
    old = make_report(severity="critical")
    BugReport.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=2), sla_due_at=timezone.now() - timedelta(days=1)
    )
    new = make_report(severity="low")
    cutoff = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert ids(agent_client.get(URL, {"created_after": cutoff})) == [str(new.pk)]
    assert ids(agent_client.get(URL, {"created_before": cutoff})) == [str(old.pk)]
    assert ids(agent_client.get(f"{URL}?sla_breached=true")) == [str(old.pk)]
    assert ids(agent_client.get(f"{URL}?sla_breached=false")) == [str(new.pk)]


def test_duplicates_hidden_unless_asked(agent_client):
    canonical = make_report()
    duplicate = make_report()
    BugReport.objects.filter(pk=duplicate.pk).update(duplicate_of=canonical)
    assert ids(agent_client.get(URL)) == [str(canonical.pk)]
    assert set(ids(agent_client.get(f"{URL}?include_duplicates=true"))) == {
        str(canonical.pk),
        str(duplicate.pk),
    }
    assert ids(agent_client.get(f"{URL}?duplicate_of={canonical.pk}")) == [str(duplicate.pk)]
    detail = agent_client.get(f"{URL}/{canonical.pk}").json()
    assert detail["duplicates_count"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "status=opened",
        "severity=urgent",
        "min_severity=3",
        "source=robot",
        "claimed=maybe",
        "sla_breached=yes please",
        "automation_enabled=2",
        "include_duplicates=perhaps",
        "duplicate_of=not-a-uuid",
        "created_after=yesterday",
        "created_before=2025-13-45",
        "ordering=severity",
        "page_size=0",
        "page_size=501",
        "page_size=ten",
        "cursor=garbage",
    ],
)
def test_invalid_filter_value_is_400_naming_the_parameter(agent_client, query):
    make_report()
    body = problem(agent_client.get(f"{URL}?{query}"), 400)
    assert query.split("=")[0] in body["errors"]


@pytest.mark.parametrize(
    "ordering",
    ["priority", "created_at", "-created_at", "-updated_at", "sla_due_at", "-occurrences"],
)
def test_pagination_walks_every_report_once_in_each_ordering(agent_client, ordering):
    severities = ["critical", "high", "medium", "low"]
    made = {str(make_report(severity=severities[i % 4]).pk) for i in range(23)}
    seen, url = [], f"{URL}?page_size=5&ordering={ordering}"
    while url:
        page = agent_client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert len(seen) == len(made) and set(seen) == made


def test_cursor_pages_neither_repeat_nor_skip_while_reports_arrive(agent_client):
    made = [str(make_report(severity="medium").pk) for _ in range(10)]
    first = agent_client.get(f"{URL}?page_size=4&ordering=created_at").json()
    # New reports arrive, some sorting before the cursor, some after.
    make_report(severity="medium")
    seen = [r["id"] for r in first["results"]]
    url = first["next"]
    while url:
        page = agent_client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert seen[:10] == made
    assert len(seen) == len(set(seen)) == 11


def test_previous_link_goes_back(agent_client):
    for _ in range(6):
        make_report()
    first = agent_client.get(f"{URL}?page_size=3&ordering=created_at").json()
    second = agent_client.get(first["next"]).json()
    assert first["previous"] is None
    back = agent_client.get(second["previous"]).json()
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]


def test_list_query_count_does_not_grow_with_page_size(agent_client, django_assert_max_num_queries):
    for i in range(60):
        make_report(severity=["critical", "low"][i % 2], stack_trace="Traceback")
    agent_client.get(f"{URL}?page_size=1")
    with django_assert_max_num_queries(6):
        assert len(agent_client.get(f"{URL}?page_size=5").json()["results"]) == 5
    with django_assert_max_num_queries(6):
        assert len(agent_client.get(f"{URL}?page_size=60").json()["results"]) == 60


def test_detail_query_count_is_constant(agent_client, django_assert_max_num_queries):
    report = make_report()
    for _ in range(5):
        agent_client.post(f"{URL}/{report.pk}/events", {"message": "x"}, format="json")
    with django_assert_max_num_queries(5 + THROTTLE_QUERIES):
        agent_client.get(f"{URL}/{report.pk}")
    with django_assert_max_num_queries(5 + THROTTLE_QUERIES):
        agent_client.get(f"{URL}/{report.pk}/events")
