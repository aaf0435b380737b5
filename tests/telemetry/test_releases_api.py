"""The release registry: admins record deployments, agents read them."""

from datetime import UTC, datetime, timedelta

import pytest

from telemetry.models import Release
from telemetry.services import release_record
from tests.conftest import THROTTLE_QUERIES

pytestmark = pytest.mark.django_db

URL = "/api/telemetry/releases"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def deploy(sha="a1b2c3d", environment="production", at=T0, version="1.0.0"):
    return release_record(
        sha=sha, version=version, environment=environment, deployed_at=at, actor="tests"
    )


def body(**overrides):
    data = {
        "sha": "A1B2C3D4E5F6",
        "version": "2.3.0",
        "environment": "production",
        "deployed_at": "2026-01-02T10:00:00Z",
    }
    data.update(overrides)
    return data


def test_admin_records_a_deployment(admin_client):
    response = admin_client.post(URL, body(), format="json")
    assert response.status_code == 201, response.json()
    got = response.json()
    assert got["sha"] == "a1b2c3d4e5f6"  # stored lowercase
    assert (got["version"], got["environment"]) == ("2.3.0", "production")
    assert got["deployed_at"].startswith("2026-01-02T10:00:00")
    assert Release.objects.filter(sha="a1b2c3d4e5f6", environment="production").count() == 1


def test_deployed_at_defaults_to_now(admin_client):
    response = admin_client.post(URL, {"sha": "abcdef1", "environment": "staging"}, format="json")
    assert response.status_code == 201
    deployed_at = datetime.fromisoformat(response.json()["deployed_at"])
    assert abs(deployed_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_recording_the_same_deployment_again_returns_it(admin_client):
    first = admin_client.post(URL, body(), format="json")
    again = admin_client.post(URL, body(), format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Release.objects.count() == 1


def test_a_release_is_one_sha_in_one_environment_as_first_recorded(admin_client):
    first = admin_client.post(URL, body(), format="json")
    again = admin_client.post(
        URL,
        body(sha="a1b2c3d4e5f6", version="9.9.9", deployed_at="2026-02-01T00:00:00Z"),
        format="json",
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the row as first recorded, version and time included
    elsewhere = admin_client.post(URL, body(environment="staging"), format="json")
    assert elsewhere.status_code == 201
    assert Release.objects.filter(sha="a1b2c3d4e5f6").count() == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha", "not-a-sha"),
        ("sha", "abc"),
        ("sha", "a" * 65),
        ("environment", ""),
        ("deployed_at", "yesterday"),
        ("version", "v" * 101),
        ("colour", "blue"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(admin_client, field, value):
    response = admin_client.post(URL, body(**{field: value}), format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_missing_environment_is_a_400(admin_client):
    response = admin_client.post(URL, {"sha": "abcdef1"}, format="json")
    assert response.status_code == 400
    assert "environment" in response.json()["errors"]


@pytest.mark.parametrize(
    ("client_fixture", "get_status", "post_status"),
    [
        ("api_client", 401, 401),
        ("reporter_client", 403, 403),
        ("agent_client", 200, 403),
        ("admin_client", 200, 201),
    ],
)
def test_registry_permissions(request, client_fixture, get_status, post_status):
    client = request.getfixturevalue(client_fixture)
    assert client.get(URL).status_code == get_status
    assert client.post(URL, body(), format="json").status_code == post_status


@pytest.mark.parametrize("path", [URL, URL + "/"])
def test_paths_work_with_and_without_trailing_slash(agent_client, admin_client, path):
    assert agent_client.get(path).status_code == 200
    assert admin_client.post(path, body(), format="json").status_code in (200, 201)


def test_list_is_latest_first_and_filters(agent_client):
    old = deploy(sha="aaaa111", at=T0)
    new = deploy(sha="bbbb222", at=T0 + timedelta(days=1))
    staging = deploy(sha="cccc333", environment="staging", at=T0 + timedelta(days=2))
    ids = lambda r: [row["id"] for row in r.json()["results"]]  # noqa: E731

    assert ids(agent_client.get(URL)) == [staging.pk, new.pk, old.pk]
    assert ids(agent_client.get(URL, {"environment": "production"})) == [new.pk, old.pk]
    assert ids(agent_client.get(URL, {"sha": "bbbb222"})) == [new.pk]
    assert ids(agent_client.get(URL, {"sha": "BBBB"})) == [new.pk]  # a prefix, any case
    assert ids(agent_client.get(URL, {"deployed_after": "2026-01-02T00:00:00Z"})) == [
        staging.pk,
        new.pk,
    ]
    bad = agent_client.get(URL, {"sha": "xyz!"})
    assert bad.status_code == 400 and "sha" in bad.json()["errors"]


def test_list_pages_with_a_cursor(agent_client, django_assert_max_num_queries):
    made = [deploy(sha=f"abcd{n:03d}", at=T0 + timedelta(hours=n)) for n in range(5)]
    seen = []
    url = f"{URL}?page_size=2"
    while url:
        with django_assert_max_num_queries(3 + THROTTLE_QUERIES):
            page = agent_client.get(url).json()
        seen.extend(row["id"] for row in page["results"])
        url = page["next"]
    assert seen == [r.pk for r in reversed(made)]


def test_same_instant_deployments_page_without_loss(agent_client):
    made = [deploy(sha=f"beef{n:03d}", at=T0) for n in range(3)]
    seen = []
    url = f"{URL}?page_size=1"
    while url:
        page = agent_client.get(url).json()
        seen.extend(row["id"] for row in page["results"])
        url = page["next"]
    assert sorted(seen) == sorted(r.pk for r in made) and len(seen) == 3
