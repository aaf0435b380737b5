"""Liveness touches nothing; readiness names what is not ready, as problem+json."""

import pytest
from django.db import OperationalError, connection, connections
from django.db.migrations.executor import MigrationExecutor

from bugtracker import health

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _look_at_migrations_again(monkeypatch):
    monkeypatch.setattr(health, "_migrated", False)


def assert_not_ready(response, **expected_checks):
    assert response.status_code == 503
    assert response["Content-Type"] == PROBLEM
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert (body["status"], body["type"]) == (503, "urn:bugtracker:problem:not-ready")
    for name, state in expected_checks.items():
        assert body["checks"][name] == state, body
        assert (f"{name} {state}" in body["detail"]) == (state != "ok"), body["detail"]
    return body


@pytest.mark.django_db
def test_liveness_answers_without_touching_the_database(api_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api_client.get("/api/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_liveness_holds_while_the_database_is_down(api_client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", refuse)
    assert api_client.get("/api/health").status_code == 200
    body = assert_not_ready(
        api_client.get("/api/ready"), database="unreachable", migrations="unknown"
    )
    assert body["checks"]["cache"] == "ok"


@pytest.mark.django_db
def test_ready_when_database_migrations_and_cache_are(api_client):
    response = api_client.get("/api/ready/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "cache": "ok"},
    }


@pytest.mark.django_db(transaction=True)
def test_not_ready_while_a_migration_is_unapplied(api_client):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("telemetry")
    executor.migrate([("telemetry", "0001_initial")])
    try:
        assert_not_ready(api_client.get("/api/ready"), database="ok", migrations="unapplied")
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert api_client.get("/api/ready").status_code == 200


class DownCache:
    def set(self, *args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    get = delete = set


@pytest.mark.django_db
def test_not_ready_when_the_cache_is_down(api_client, monkeypatch):
    monkeypatch.setattr(health, "cache", DownCache())
    assert_not_ready(api_client.get("/api/ready"), cache="unreachable", database="ok")


@pytest.mark.django_db
def test_probes_need_no_key_and_are_in_the_schema(api_client):
    schema = api_client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    operations = {path.rstrip("/"): ops for path, ops in schema["paths"].items()}
    for path in ("/api/health", "/api/ready"):
        assert {} in operations[path]["get"]["security"], path
    ready = operations["/api/ready"]["get"]
    assert list(ready["responses"]["503"]["content"]) == [PROBLEM]
    assert "Retry-After" in ready["responses"]["503"]["headers"]
