"""A live gunicorn on the test database, and the real sentry-sdk reporting to it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from bugtracker.services import api_key_create_with_dsn
from tests.hardening.live import ROOT, LiveServer

SDK_APP = Path(__file__).with_name("sdk_app.py")


def database_url() -> str:
    """The test database as a DATABASE_URL a server process can open."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


@pytest.fixture(scope="module")
def gunicorn_server(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        url = database_url()
    log = tmp_path_factory.mktemp("ingest") / "server.log"
    with LiveServer(database_url=url, log_path=log, INGEST_RATE_PER_KEY="100000/min") as server:
        yield server


@pytest.fixture
def dsn(gunicorn_server, transactional_db):
    _, _, text = api_key_create_with_dsn(
        name="shop-backend", role="reporter", host=f"127.0.0.1:{gunicorn_server.port}"
    )
    return text


def run_sdk(dsn: str, scenario: str) -> dict:
    """The SDK app in a subprocess; what it printed."""
    done = subprocess.run(
        [sys.executable, str(SDK_APP), dsn, scenario],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _forget_known_dsns():
    from ingest import auth

    auth.forget_known_dsns()
