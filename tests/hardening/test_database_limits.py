"""Every PostgreSQL wait is bounded, with limits that depend on the process: a request fails
fast, a command (migrate, backfill_json) may run long."""

import subprocess

import pytest
from django.db import connection

from .live import BIN, ROOT

NAMES = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
SHOW = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    f"    for name in {NAMES!r}:\n"
    "        c.execute('SHOW ' + name)\n"
    "        print('limit', name, c.fetchone()[0])\n"
)


def server_settings(cursor) -> dict:
    shown = {}
    for name in NAMES:
        cursor.execute(f"SHOW {name}")
        shown[name] = cursor.fetchone()[0]
    return shown


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_web_process_connection_has_every_wait_bounded():
    with connection.cursor() as cursor:
        assert server_settings(cursor) == {
            "statement_timeout": "30s",
            "lock_timeout": "5s",
            "idle_in_transaction_session_timeout": "30s",
        }
    parameters = connection.connection.info.get_parameters()
    assert parameters["connect_timeout"] == "5"
    assert parameters["keepalives"] == "1"
    assert parameters["tcp_user_timeout"] == "20000"


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_command_has_its_own_limits(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", _url())
    monkeypatch.setenv("COMMAND_LOCK_TIMEOUT", "90")
    shown = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", SHOW],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    limits = [line.split(" ")[1:] for line in shown.splitlines() if line.startswith("limit ")]
    assert dict(limits) == {
        "statement_timeout": "0",
        "lock_timeout": "90s",
        "idle_in_transaction_session_timeout": "0",
    }


def _url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
