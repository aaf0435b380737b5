"""A live bugtracker (gunicorn on the test database) for the client package's tests."""

import contextlib
import os
import socket
import subprocess
import time

import pytest

from bugtracker.services import api_key_create
from tests.hardening.live import BIN, LiveServer, free_port

UNTHROTTLED = {f"THROTTLE_{role}": "1000000/min" for role in ("ANONYMOUS", "AGENT", "ADMIN")}


def database_url(settings: dict) -> str:
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"  # the test database is a file (settings.py)
    host = settings["HOST"] or "127.0.0.1"
    return f"postgres://{settings['USER']}@{host}:{settings['PORT'] or 5432}/{settings['NAME']}"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    """One gunicorn per module on pytest-django's test database; tests that use it take
    `transactional_db`, so what they write is committed and the server sees it."""
    from django.db import connection

    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with LiveServer(database_url=url, log_path=log_path, **UNTHROTTLED) as live:
        yield live


@pytest.fixture
def agent_key(transactional_db):
    return api_key_create(name="agent-mcp", role="agent")[1]


@pytest.fixture
def other_agent_key(transactional_db):
    return api_key_create(name="agent-other", role="agent")[1]


def client_env(server, key: str | None, **extra: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "BUGTRACKER_URL": server.base,
        **extra,
    }
    if key is not None:
        env["BUGTRACKER_API_KEY"] = key
    return env


@contextlib.contextmanager
def mcp_http_server(server, *args: str, **env: str):
    """`bugtracker-mcp --http` on a free port, no key of its own: callers bring theirs."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "bugtracker-mcp"), "--http", "--port", str(port), *args],
        env=client_env(server, None, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "bugtracker-mcp --http did not come up"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def word(n: int) -> str:
    """0 → "a", 26 → "ba": titles that dedup's number masking keeps apart."""
    text = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        text = chr(ord("a") + rest) + text
    return text
