"""A corpus of hostile input against every operation: only 4xx problems (or a plain success
where the input is harmless text), never a 500, and the data already there stays intact."""

import json
import uuid

import pytest

from dedup.models import DedupGroup
from reports.models import BugReport, BugReportEvent
from tests.conftest import client_for
from tests.factories import make_report

pytestmark = pytest.mark.django_db

URL = "/api/bug-reports"

HUGE = "x" * (300 * 1024)
DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
SQL = ["' OR '1'='1", "1; DROP TABLE bug_reports; --", '" OR 1=1 --', "%' --", "1' UNION SELECT *"]
PATHS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/dev/null", "C:\\Windows\\win.ini"]
ODD_TEXT = [
    "",
    " ",
    "%",
    "%s%n%x",
    "\\",
    "\x00",
    "a\x00b",
    "\ud800",
    "\u202e\u0000",
    "😀" * 100,
    "x" * 10_000,
    *SQL,
    *PATHS,
]
# A URL cannot carry a lone surrogate; its bytes (%ED%A0%80) are in the raw queries instead.
QUERY_TEXT = [text for text in ODD_TEXT if text != "\ud800"]
WRONG_TYPES = [None, 0, -1, 10**40, 1.5, True, [], ["x"], {}, {"$gt": ""}, "\x00", "\ud800"]

REPORT_FIELDS = [
    "title",
    "description",
    "severity",
    "category",
    "component",
    "route",
    "environment",
    "metadata",
    "automation_enabled",
    "assignee_id",
    "source",
    "reporter_id",
    "stack_trace",
    "trace_id",
    "request_id",
    "release_sha",
    "telemetry",
    "fingerprint",
]
PATCH_FIELDS = [
    "title",
    "description",
    "severity",
    "status",
    "assignee_id",
    "resolution_notes",
    "commit_shas",
    "automation_enabled",
    "metadata",
]
LIST_FILTERS = [
    "status",
    "severity",
    "min_severity",
    "category",
    "component",
    "source",
    "environment",
    "assigned_to",
    "claimed",
    "trace_id",
    "request_id",
    "release_sha",
    "created_after",
    "created_before",
    "sla_breached",
    "automation_enabled",
    "include_duplicates",
    "duplicate_of",
    "q",
    "ordering",
    "page_size",
    "cursor",
]
BAD_DATES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2864-07-26T01:29:46.29997-22:19",
    "0000-00-00",
    "2024-02-30T00:00:00Z",
    "99999-01-01",
    "1e308",
]
RAW_BODIES = [
    b'{"title": ',
    b"\xff\xfe\xfa",
    b'{"title": "\xc3\x28"}',
    b'{"title": "a\x00b"}',
    b'{"title": "a\\u0000b"}',
    b'{"title": NaN}',
    b'{"title": "x", "lease_seconds": Infinity}',
    b'["a list"]',
    b'"a string"',
    b"null",
    b"1e999999",
    DEEP_ARRAY.encode(),
    ('{"title": ' * 50_000).encode(),
    b'{"title": "x", "metadata": {"a": "\\ud800"}}',
    b'{"title": "x", "metadata": {"\\udfff": 1}}',
    b'{"title": "x", "telemetry": {"a": ["\\udbff"]}}',
]


def send(client, method, url, body, **extra):
    """JSON with ASCII escapes, so lone surrogates travel as `\\ud800` as a client would send them."""
    return client.generic(method, url, json.dumps(body), content_type="application/json", **extra)


def assert_answered_safely(response):
    """A 2xx/3xx, or a 4xx problem; never a 5xx."""
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/problem+json", response.content[:300]
        body = response.json()
        assert body["status"] == response.status_code
        assert {"type", "title", "detail"} <= set(body)


@pytest.fixture(autouse=True)
def _unthrottled(monkeypatch):
    # The corpus is thousands of requests a minute from one client; throttles are tested apart.
    from bugtracker.throttling import RoleRateThrottle

    monkeypatch.setattr(RoleRateThrottle, "THROTTLE_RATES", {})


@pytest.fixture
def victim():
    """The data that must survive: a report with an event and its dedup group."""
    report = make_report(title="Payment page crashes", description="keep me", severity="high")
    return report


def snapshot():
    """The first report made (the victim) as stored, and its history."""
    report = BugReport.objects.order_by("created_at").first()
    row = BugReport.objects.filter(pk=report.pk).values().get()
    row.pop("updated_at")
    group = DedupGroup.objects.filter(pk=report.dedup_group_id).values("occurrences").first()
    return row, BugReportEvent.objects.filter(report=report).count(), group


def test_hostile_submissions_are_refused_and_store_nothing(victim):
    before, accepted = snapshot(), 0
    clients = [client_for(None), client_for("reporter", "r"), client_for("agent", "a")]
    bodies = [{"title": HUGE}, {"title": "x", "metadata": {"k": HUGE}}]
    bodies += [{"title": "x", field: value} for field in REPORT_FIELDS for value in WRONG_TYPES]
    bodies += [{"title": "x", "metadata": nested(depth)} for depth in (64, 900)]
    bodies += [{"title": "x", name: "x"} for name in ("id", "status", "version", "__proto__")]
    for client in clients:
        for body in bodies:
            response = send(client, "POST", URL, body)
            assert_answered_safely(response)
            accepted += response.status_code == 201
        for raw in RAW_BODIES:
            response = client.generic("POST", URL, raw, content_type="application/json")
            assert_answered_safely(response)
            assert response.status_code in (400, 413), (raw[:60], response.content[:300])
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            response = client.generic("POST", URL, b"title=x", content_type=content_type)
            assert_answered_safely(response)
            assert response.status_code in (401, 403, 415)
    assert snapshot() == before
    # Only harmless bodies got in (a null optional field, the 64-deep metadata), nothing else.
    assert BugReport.objects.count() == 1 + accepted


def test_wrong_types_in_every_field_are_400_naming_it(agent_client, victim):
    before = snapshot()
    for field in REPORT_FIELDS:
        for value in WRONG_TYPES:
            body = {"title": "A new bug", field: value}
            response = send(agent_client, "POST", URL, body)
            assert_answered_safely(response)
            if legitimate(field, value):
                assert response.status_code == 201, (field, value, response.content)
                continue
            assert response.status_code == 400, (field, value, response.content)
            if value in ("\x00", "\ud800"):  # refused by the parser, before any field
                continue
            assert field in response.json()["errors"], (field, value, response.json())
    assert snapshot() == before


NULLABLE = {"category", "component", "route", "environment", "assignee_id", "reporter_id"}
NULLABLE |= {"trace_id", "request_id", "release_sha"}


def legitimate(field, value) -> bool:
    """Values in WRONG_TYPES that are right for this field."""
    if value is None:
        return field in NULLABLE
    if isinstance(value, bool):
        return field in ("automation_enabled", "verify")
    if isinstance(value, dict):
        return field in ("metadata", "telemetry", "data")
    if value == ["x"]:
        return field == "fingerprint"
    return value == [] and field == "commit_shas"


def test_hostile_updates_leave_the_report_as_it_was(agent_client, victim):
    before = snapshot()
    detail = f"{URL}/{victim.pk}"
    for field in PATCH_FIELDS:
        for value in [*WRONG_TYPES, HUGE, "\x00", "\ud800", {"k": HUGE}]:
            if legitimate(field, value):
                continue
            response = send(agent_client, "PATCH", detail, {field: value})
            assert_answered_safely(response)
            assert response.status_code == 400, (field, value, response.content[:300])
    for raw in RAW_BODIES:
        response = agent_client.generic("PATCH", detail, raw, content_type="application/json")
        assert response.status_code in (400, 413), (raw[:60], response.content[:300])
    assert snapshot() == before


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_IF_MATCH": '"99999999999999999999999999"'},
        {"HTTP_IF_MATCH": '"-1"'},
        {"HTTP_IF_MATCH": "' OR 1=1 --"},
        {"HTTP_IF_MATCH": '"1", "2"'},
        {"HTTP_X_CLAIM_TOKEN": "x" * 10_000},
        {"HTTP_X_CLAIM_TOKEN": "' OR '1'='1"},
    ],
)
def test_hostile_precondition_and_token_headers(agent_client, other_agent_client, headers):
    report = make_report()
    claim = send(other_agent_client, "POST", f"{URL}/{report.pk}/claim", {})
    assert claim.status_code == 200
    response = send(agent_client, "PATCH", f"{URL}/{report.pk}", {"title": "Changed"}, **headers)
    assert_answered_safely(response)
    assert response.status_code in (400, 409, 412)
    assert BugReport.objects.get(pk=report.pk).title == report.title


def test_hostile_ids_in_paths_are_404_problems(agent_client, admin_client):
    odd_ids = ["0", "-1", "' OR 1=1 --", "..%2F..%2Fetc%2Fpasswd", "%00", "x" * 2000, "😀"]
    odd_ids += [str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"]
    for report_id in odd_ids:
        for method, suffix in [
            ("get", ""),
            ("patch", ""),
            ("get", "/events"),
            ("post", "/events"),
            ("get", "/runs"),
            ("get", "/context"),
            ("post", "/claim"),
            ("post", "/heartbeat"),
            ("post", "/release"),
            ("post", "/resolve"),
        ]:
            body = {"message": "m"} if suffix == "/events" and method == "post" else {}
            response = send(agent_client, method.upper(), f"{URL}/{report_id}{suffix}", body)
            assert_answered_safely(response)
            assert response.status_code == 404, (method, report_id, suffix, response.content)
        for suffix in ("/merge", "/split"):
            response = send(admin_client, "POST", f"{URL}/{report_id}{suffix}", {"into": "x"})
            assert_answered_safely(response)
            assert response.status_code in (400, 404), (report_id, suffix, response.content)
        response = agent_client.get(f"/api/dedup/groups/{report_id}")
        assert response.status_code == 404
        response = agent_client.get(f"/api/telemetry/traces/{report_id}")
        assert_answered_safely(response)


def test_sql_and_path_fragments_in_every_filter_are_harmless(agent_client, victim):
    before = snapshot()
    for name in LIST_FILTERS:
        for value in [*QUERY_TEXT, *BAD_DATES, "true,false", "open,,done", ",", "-1", "1e9"]:
            response = agent_client.get(URL, {name: value})
            assert_answered_safely(response)
            if response.status_code == 200:
                ids = {row["id"] for row in response.json()["results"]}
                assert ids <= {str(victim.pk)}
    for name in ("environment", "sha", "deployed_after", "deployed_before", "ordering", "cursor"):
        for value in [*QUERY_TEXT, *BAD_DATES]:
            assert_answered_safely(agent_client.get("/api/telemetry/releases", {name: value}))
    for name in ("ordering", "cursor", "include_merged", "page_size", "canonical", "fingerprint"):
        for value in QUERY_TEXT:
            assert_answered_safely(agent_client.get("/api/dedup/groups", {name: value}))
    raw_queries = [
        "status=%FF%FE",
        "q=%ED%A0%80",
        "trace_id=%ED%A0%80",
        "q=%00",
        "severity=%C3%28",
        "q=" + "%" * 100,
        "&&&===",
    ]
    for query in raw_queries:
        assert_answered_safely(agent_client.generic("GET", f"{URL}?{query}"))
    assert snapshot() == before


def test_hostile_claim_family_bodies_are_400(agent_client, admin_client, victim):
    before = snapshot()
    detail = f"{URL}/{victim.pk}"
    bodies: list[dict] = [
        {"lease_seconds": value} for value in [*WRONG_TYPES, 0, 86401, "900", 1e300]
    ]
    bodies += [{"severity": value} for value in [*WRONG_TYPES, "urgent", ["high", 5]]]
    bodies += [{"min_severity": value} for value in WRONG_TYPES]
    bodies += [{"category": value} for value in [0, [], {}, "\x00"]]
    bodies += [{"note": value} for value in [0, [], {}, "\x00"]]
    bodies += [{"verify": value} for value in ["maybe", [], {}, 2]]
    bodies += [{"commit_shas": value} for value in ["abc", ["zz"], [1], ["a" * 65]]]
    # An empty severity or category list to claim-next means "any".
    bodies = [
        b
        for b in bodies
        if not legitimate(*next(iter(b.items()))) and b not in ({"severity": []}, {"category": []})
    ]
    for body in bodies:
        for path in (f"{detail}/claim", f"{URL}/claim-next", f"{detail}/heartbeat"):
            response = send(agent_client, "POST", path, body)
            assert_answered_safely(response)
            assert response.status_code in (400, 409), (path, body, response.content)
        for path in (f"{detail}/release", f"{detail}/resolve"):
            response = send(admin_client, "POST", path, body)
            assert_answered_safely(response)
            assert response.status_code in (400, 409), (path, body, response.content)
    for body in [
        {"kind": "resolved", "message": "m"},
        {"message": 1},
        {"message": "m", "data": []},
    ]:
        response = send(agent_client, "POST", f"{detail}/events", body)
        assert response.status_code == 400
    for body in [{"into": value} for value in WRONG_TYPES] + [{"into": str(victim.pk)}]:
        response = send(admin_client, "POST", f"{detail}/merge", body)
        assert_answered_safely(response)
        assert response.status_code in (400, 404, 409)
    release_bodies = [{"sha": value, "environment": "prod"} for value in WRONG_TYPES]
    release_bodies += [{"sha": "abcd", "environment": value} for value in WRONG_TYPES]
    release_bodies += [{"sha": "abcd", "environment": "p", "deployed_at": v} for v in BAD_DATES]
    for body in release_bodies:
        response = send(admin_client, "POST", "/api/telemetry/releases", body)
        assert_answered_safely(response)
    assert snapshot() == before


def test_hostile_headers_are_harmless(api_client, agent_client, victim):
    headers = [
        {"HTTP_AUTHORIZATION": "Bearer ' OR 1=1 --"},
        {"HTTP_AUTHORIZATION": "Bearer " + "x" * 10_000},
        {"HTTP_AUTHORIZATION": "Bearer \x00"},
        {"HTTP_AUTHORIZATION": "Bearer a b c"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
        {"HTTP_TRACEPARENT": "00-" + "z" * 32 + "-" + "0" * 16 + "-01"},
        {"HTTP_X_REQUEST_ID": "\r\nX-Injected: 1"},
        {"HTTP_USER_AGENT": "\x00" * 10 + "ua"},
        {"HTTP_USER_AGENT": "x" * 100_000},
        {"HTTP_IDEMPOTENCY_KEY": "\x00"},
        {"HTTP_IDEMPOTENCY_KEY": "k" * 10_000},
    ]
    for extra in headers:
        for client in (api_client, agent_client):
            response = send(client, "POST", URL, {"title": "Header test"}, **extra)
            assert_answered_safely(response)
            assert "X-Injected" not in response
            if response.status_code == 201:
                report = BugReport.objects.get(pk=response.json()["id"])
                assert "\x00" not in json.dumps(report.telemetry)
                report.delete()
            assert_answered_safely(client.get(URL, **extra))


def nested(depth: int):
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_an_over_long_url_is_a_414_problem_and_one_at_the_limit_is_read(agent_client):
    from bugtracker.http import MAX_URL_LENGTH

    room = MAX_URL_LENGTH - len(URL) - len("q=")
    at_limit = agent_client.get(f"{URL}?q={'a' * room}")
    assert at_limit.status_code == 200

    too_long = agent_client.get(f"{URL}?q={'a' * (room + 1)}")
    assert too_long.status_code == 414
    assert too_long["Content-Type"] == "application/problem+json"
    assert too_long.json()["status"] == 414
    assert str(MAX_URL_LENGTH) in too_long.json()["detail"]
