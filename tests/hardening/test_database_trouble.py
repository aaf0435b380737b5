"""Database trouble under a running server: 503 problems with Retry-After, never a 500 or a
traceback, failed writes logged with their content, and recovery without a restart."""

import json
import sqlite3
import subprocess
import time

import pytest
from django.db import connection

from bugtracker.services import api_key_create
from reports.models import BugReport

from .live import BIN, ROOT, LiveServer, TcpProxy

UNTHROTTLED = {f"THROTTLE_{role}": "1000000/min" for role in ("ANONYMOUS", "AGENT", "ADMIN")}


def assert_unavailable(answer):
    assert answer.status == 503, (answer.status, answer.body[:500])
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert int(answer.headers["Retry-After"]) >= 1
    body = answer.json()
    assert body["status"] == 503 and body["type"].endswith("database-unavailable")
    assert b"Traceback" not in answer.body and b"psycopg" not in answer.body


def failed_writes(log_path):
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "write_failed"]


def wait_for(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError("timed out")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_down_is_503_then_recovers_without_restart(tmp_path):
    _, agent_key = api_key_create(name="agent-db-down", role="agent")
    auth = {"Authorization": f"Bearer {agent_key}"}
    db = connection.settings_dict
    upstream = (db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    log_path = tmp_path / "server.log"
    with TcpProxy(upstream) as proxy:
        url = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
        with LiveServer(database_url=url, log_path=log_path, **UNTHROTTLED) as server:
            first = server.request("POST", "/api/bug-reports", {"title": "Before the outage"}, auth)
            assert first.status == 201, first.body
            pid = server.process.pid

            proxy.cut()
            lost = {"title": "Submitted while the database is down", "description": "keep me"}
            assert_unavailable(server.request("POST", "/api/bug-reports", lost, auth))
            assert_unavailable(server.request("POST", "/api/bug-reports", lost))  # anonymous
            assert_unavailable(server.request("GET", "/api/bug-reports", headers=auth))
            report_url = f"/api/bug-reports/{first.json()['id']}"
            patch = {"severity": "critical"}
            assert_unavailable(server.request("PATCH", report_url, patch, auth))
            assert_unavailable(server.request("POST", f"{report_url}/claim", {}, auth))
            # Liveness holds (no orchestrator restarts the fleet); readiness names the database.
            assert server.request("GET", "/api/health").status == 200
            ready = server.request("GET", "/api/ready")
            assert ready.status == 503 and int(ready.headers["Retry-After"]) >= 1
            assert ready.headers["Content-Type"] == "application/problem+json"
            assert ready.json()["checks"]["database"] == "unreachable"

            proxy.restore()
            listed = wait_for(
                lambda: (
                    (a := server.request("GET", "/api/bug-reports", headers=auth)).status == 200
                    and a
                )
            )
            assert [r["title"] for r in listed.json()["results"]] == ["Before the outage"]
            again = server.request("POST", "/api/bug-reports", lost, auth)
            assert again.status == 201, again.body
            assert server.request("GET", "/api/ready").status == 200
            assert server.process.pid == pid and server.process.poll() is None

    assert BugReport.objects.count() == 2
    writes = failed_writes(log_path)
    submissions = [w for w in writes if w["what"] == "POST /api/bug-reports"]
    assert len(submissions) == 2
    assert submissions[0]["payload"] == lost
    patches = [w for w in writes if w["what"].startswith("PATCH")]
    assert patches and patches[0]["payload"] == patch
    assert patches[0]["report_id"] == first.json()["id"]
    assert agent_key not in log_path.read_text()


def test_locked_sqlite_is_503_then_recovers(tmp_path):
    database = tmp_path / "locked.sqlite3"
    url = f"sqlite:///{database}"
    env = {"DATABASE_URL": url, "SECRET_KEY": "test", "PATH": str(BIN)}
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    with LiveServer(
        database_url=url, log_path=tmp_path / "server.log", SQLITE_TIMEOUT="1"
    ) as server:
        body = {"title": "While another writer holds the lock"}
        blocker = sqlite3.connect(database, isolation_level=None, timeout=5)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            assert_unavailable(server.request("POST", "/api/bug-reports", body))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        answer = server.request("POST", "/api/bug-reports", body)
        assert answer.status == 201, answer.body
    writes = failed_writes(tmp_path / "server.log")
    assert [w["payload"] for w in writes] == [body]
