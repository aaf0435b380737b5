"""Starting and watching real processes (manage.py commands, servers) for the worker tests."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

from .helpers import COMMAND, PROJECT

STARTED = "Remediation worker started as "
STOPPING = "Remediation worker "  # ... "<holder> stopping": the worker has begun to stop


def database_url() -> str:
    """The test database, for child processes (the test must be transaction=True)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(log: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RUN_MAIN", "PYTEST_CURRENT_TEST")}
    env.update(
        DATABASE_URL=database_url(),
        SECRET_KEY="test-secret-key",
        BUGTRACKER_WORKER="1",
        REMEDIATION_COMMAND=json.dumps(COMMAND),
        REMEDIATION_LOG=str(log),
        WORKER_POLL_SECONDS="0.2",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A process in its own session with its output in a file."""

    def __init__(self, argv: list[str], env: dict, output: Path):
        self.output = output
        self._file = open(output, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    @classmethod
    def manage(cls, *args: str, env: dict, output: Path) -> "Child":
        return cls([sys.executable, str(PROJECT / "manage.py"), *args], env, output)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def started_pids(self) -> list[int]:
        """Pids of the processes whose worker logged its start."""
        return [
            int(line.split(STARTED, 1)[1].split()[0].rsplit(":", 1)[1])
            for line in self.lines(STARTED)
        ]

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.text().splitlines() if needle in line]

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None and not predicate():
                raise AssertionError(
                    f"process exited ({self.process.returncode}) before {what}:\n{self.text()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.text()[-5000:]}")
            time.sleep(0.1)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait_for_port(self, port: int, timeout: float = 60.0) -> None:
        """Until the server accepts connections: it has imported everything and serves."""

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        self.wait_for(answers, timeout=timeout, what=f"the server to answer on port {port}")

    def stop(
        self,
        sig: int = signal.SIGTERM,
        timeout: float = 30.0,
        *,
        taken=None,
        resend_every: float = 5.0,
    ) -> int:
        """Send `sig` and wait for the process to exit (SIGKILL after `timeout`). With `taken`
        (a predicate: the process has begun to stop), `sig` is sent again every
        `resend_every` seconds until it has: a signal can be lost (Python swallows a
        KeyboardInterrupt raised where it cannot propagate, "Exception ignored ...")."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.process.wait(
                        timeout=min(resend_every, max(0.0, deadline - time.monotonic()))
                    )
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        self.signal_group(signal.SIGKILL)
                        self.process.wait()
                        break
                    if taken is not None and not taken():
                        with contextlib.suppress(ProcessLookupError):
                            self.process.send_signal(sig)
        self.signal_group(signal.SIGKILL)  # anything it left behind
        self._file.close()
        return self.process.returncode

    def worker_stopping(self) -> bool:
        """This process's remediation worker has logged that it is stopping."""
        return any(" stopping (" in line for line in self.lines(STOPPING))


def run_manage(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
