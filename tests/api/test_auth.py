from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from bugtracker.models import ApiKey
from tests.factories import make_report

pytestmark = pytest.mark.django_db


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def create_key(name: str, role: str) -> str:
    out = StringIO()
    call_command("create_api_key", name, "--role", role, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_create_api_key_prints_the_key_last_and_stores_only_its_hash():
    key = create_key("ci-agent", "agent")
    stored = ApiKey.objects.get(name="ci-agent")
    assert stored.role == "agent"
    assert key not in (stored.key_hash, stored.prefix)
    assert bearer(key).get("/api/bug-reports").status_code == 200


def test_revoked_key_is_refused():
    key = create_key("old", "agent")
    call_command("revoke_api_key", "old", stdout=StringIO())
    response = bearer(key).get("/api/bug-reports")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_duplicate_key_name_is_an_error():
    create_key("twin", "agent")
    with pytest.raises(Exception, match="already exists"):
        create_key("twin", "admin")


READ = ("get", "/api/bug-reports", None)
SUBMIT = ("post", "/api/bug-reports", {"title": "x"})
ADMIN_STATUS_FREE = ("get", "/api/health", None)


@pytest.mark.parametrize(
    ("role", "call", "expected"),
    [
        (None, READ, 401),
        ("reporter", READ, 403),
        ("agent", READ, 200),
        ("admin", READ, 200),
        (None, SUBMIT, 201),
        ("reporter", SUBMIT, 201),
        ("agent", SUBMIT, 201),
        ("admin", SUBMIT, 201),
        (None, ADMIN_STATUS_FREE, 200),
    ],
)
def test_role_matrix(role, call, expected):
    client = bearer(create_key(f"k-{role}", role)) if role else APIClient()
    method, path, body = call
    response = (
        getattr(client, method)(path, body, format="json")
        if body
        else getattr(client, method)(path)
    )
    assert response.status_code == expected, response.content


def test_reporter_cannot_patch_or_claim():
    report = make_report()
    client = bearer(create_key("rep", "reporter"))
    assert (
        client.patch(
            f"/api/bug-reports/{report.pk}", {"severity": "low"}, format="json"
        ).status_code
        == 403
    )
    assert client.post(f"/api/bug-reports/{report.pk}/claim", {}, format="json").status_code == 403


@pytest.mark.parametrize(
    "header", ["Bearer nonsense", "Bearer", "Token abc", "Bearer a b", "Bearer \u00e9\u00e9"]
)
def test_garbage_credentials_are_401_problems(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    response = client.get("/api/bug-reports")
    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_anonymous_submission_forces_source_user():
    response = APIClient().post(
        "/api/bug-reports", {"title": "x", "source": "system"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["source"] == "user"


def test_anonymous_submission_can_be_switched_off(settings):
    settings.BUGTRACKER_ANONYMOUS_SUBMIT = False
    response = APIClient().post("/api/bug-reports", {"title": "x"}, format="json")
    assert response.status_code == 401


def test_agent_submission_keeps_its_source_and_reporter(agent_client):
    response = agent_client.post(
        "/api/bug-reports", {"title": "x", "source": "agent"}, format="json"
    )
    assert response.json()["source"] == "agent"
    assert response.json()["reporter_id"] == "agent-1"


def test_anonymous_submission_is_throttled_per_client(settings):
    rates = dict(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], anonymous="2/min")
    from bugtracker.throttling import RoleRateThrottle

    original = RoleRateThrottle.THROTTLE_RATES
    RoleRateThrottle.THROTTLE_RATES = rates
    try:
        client = APIClient()
        codes = [
            client.post("/api/bug-reports", {"title": "x"}, format="json").status_code
            for _ in range(3)
        ]
        assert codes == [201, 201, 429]
        last = client.post("/api/bug-reports", {"title": "x"}, format="json")
        assert int(last["Retry-After"]) >= 1
    finally:
        RoleRateThrottle.THROTTLE_RATES = original


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "needed", "allowed"),
    [
        ("reporter", "get", "/api/bug-reports", None, "agent", ["agent", "admin"]),
        ("agent", "get", "/api/admin/status", None, "admin", ["admin"]),
        (
            "agent",
            "post",
            "/api/telemetry/releases",
            {"sha": "abcdef1", "environment": "x"},
            "admin",
            ["admin"],
        ),
    ],
)
def test_a_403_says_which_role_the_call_needs(role, method, path, body, needed, allowed):
    client = bearer(create_key(f"k-{role}", role))
    response = getattr(client, method)(path, body, format="json")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert (problem["required_role"], problem["allowed_roles"]) == (needed, allowed)
    assert problem["your_role"] == role
    assert f"needs the {' or '.join(allowed)} role" in problem["detail"]
    assert f"this key's role is {role}" in problem["detail"]
