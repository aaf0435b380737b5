import pytest
from django.db import connection
from rest_framework.test import APIClient

from bugtracker.services import api_key_create

from .factories import make_report  # noqa: F401  (re-exported for tests)

# What counting a request against its rate costs in a test, on the default (per-process) cache:
# the throttle's upsert and, on a new window, the pruning of ended ones, in a savepoint (the
# test's transaction is open). Query-count guards add it to what the view itself may spend.
THROTTLE_QUERIES = 4


def client_for(role: str | None, name: str | None = None) -> APIClient:
    client = APIClient()
    if role is not None:
        _, raw = api_key_create(name=name or f"{role}-1", role=role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def reporter_client(db):
    return client_for("reporter")


@pytest.fixture
def agent_client(db):
    return client_for("agent")


@pytest.fixture
def other_agent_client(db):
    return client_for("agent", "agent-2")


@pytest.fixture
def admin_client(db):
    return client_for("admin")


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres") and not is_postgres():
        pytest.skip("real multi-connection concurrency runs on PostgreSQL (DATABASE_URL)")
