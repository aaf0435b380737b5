#!/usr/bin/env python
"""Schemathesis against a live server: the API held to its own OpenAPI schema.

Starts gunicorn (DEBUG off, production settings) on a free port against DATABASE_URL
(default: a fresh SQLite file in a temporary directory), migrates, creates an agent
and an admin key, runs schemathesis once per role with the checks below, then stops
the server. Exit status: schemathesis's (0 when nothing failed), or 2 when the server
did not come up.

    .venv/bin/python scripts/fuzz.py                      # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bugtracker .venv/bin/python scripts/fuzz.py
    FUZZ_MAX_EXAMPLES=200 .venv/bin/python scripts/fuzz.py  # more examples per operation
    .venv/bin/python scripts/fuzz.py --include-path-regex claim  # extra schemathesis options

Environment: FUZZ_MAX_EXAMPLES (default 25 per operation and phase), FUZZ_SEED (default
random; printed so a failure can be replayed), FUZZ_WORKERS (default 2),
FUZZ_REPORT_DIR (JUnit report and the server log there; default a temporary dir).
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
ROLES = tuple(os.environ.get("FUZZ_ROLES", "agent,admin").split(","))
# Throttles stay on (a 429 is a documented answer) but high enough not to starve the fuzzer.
FUZZ_THROTTLE = "1000000/min"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(workdir: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'fuzz.sqlite3'}")
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    env.update(
        DEBUG="0",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=env.get("FUZZ_SERVER_WORKERS", "2"),
        # No request-line limit in gunicorn: every URL the fuzzer makes reaches the app,
        # whose own limit (a documented 414 problem) is what is being checked.
        GUNICORN_LIMIT_REQUEST_LINE="0",
        GUNICORN_THREADS="4",
        BUGTRACKER_WORKER="0",
        # Long-polls end after a second: the fuzzer asks for `wait` up to 60 s.
        LONG_POLL_MAX_SECONDS="1",
        # Webhooks the fuzzer subscribes are never delivered: nothing leaves the machine.
        WEBHOOK_WORKER="0",
        LOG_LEVEL=env.get("FUZZ_LOG_LEVEL", "WARNING"),
        THROTTLE_ANONYMOUS=FUZZ_THROTTLE,
        THROTTLE_REPORTER=FUZZ_THROTTLE,
        THROTTLE_AGENT=FUZZ_THROTTLE,
        THROTTLE_ADMIN=FUZZ_THROTTLE,
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def wait_until_up(url: str, server: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def schemathesis(
    base: str, key: str, role: str, report_dir: Path, seed: str, extra: list[str]
) -> int:
    command = [
        str(BIN / "schemathesis"),
        "run",
        f"{base}/api/schema",
        "--checks",
        ",".join(CHECKS),
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        os.environ.get("FUZZ_MAX_EXAMPLES", "25"),
        "--workers",
        os.environ.get("FUZZ_WORKERS", "2"),
        "--seed",
        seed,
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "too_slow,filter_too_much",
        "--report",
        "junit",
        "--report-junit-path",
        str(report_dir / f"junit-{role}.xml"),
        "--no-color",
        *extra,
    ]
    print(f"== schemathesis as {role}: seed {seed}", flush=True)
    # Run from the report dir: schemathesis keeps its cache (.schemathesis/) in the working dir.
    return subprocess.run(command, cwd=report_dir).returncode


def main() -> int:
    report_dir = Path(os.environ.get("FUZZ_REPORT_DIR") or tempfile.mkdtemp(prefix="fuzz-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-db-"))
    port = free_port()
    env = server_environment(workdir, port)
    base = f"http://127.0.0.1:{port}"
    seed = os.environ.get("FUZZ_SEED") or str(secrets.randbelow(2**31))
    print(f"== fuzzing {base} on {env['DATABASE_URL'].split('@')[-1]}; logs in {report_dir}")

    manage(env, "migrate", "--noinput", "--verbosity", "0")
    suffix = secrets.token_hex(4)
    keys = {
        role: manage(env, "create_api_key", f"fuzz-{role}-{suffix}", "--role", role)
        .strip()
        .splitlines()[-1]
        for role in ROLES
    }
    log = (report_dir / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if not wait_until_up(f"{base}/api/health", server, time.monotonic() + 60):
            print(f"server did not come up; see {report_dir / 'server.log'}", file=sys.stderr)
            return 2
        failed = 0
        for role in ROLES:
            failed |= schemathesis(base, keys[role], role, report_dir, seed, sys.argv[1:])
    finally:
        stop(server)
        log.close()
        for role in ROLES:
            with contextlib.suppress(subprocess.CalledProcessError):
                manage(env, "revoke_api_key", f"fuzz-{role}-{suffix}")
        shutil.rmtree(workdir, ignore_errors=True)
    tracebacks = (report_dir / "server.log").read_text(errors="replace").count("Traceback")
    print(f"== server log: {tracebacks} tracebacks ({report_dir / 'server.log'})")
    return failed


if __name__ == "__main__":
    sys.exit(main())
