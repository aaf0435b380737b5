"""Running the remediation command: one subprocess in its own session, fed the report on
stdin, its output tail kept, heartbeats on a tick, killed (the whole process group) on a
timeout, a lost lease or shutdown; whether the command can start at all; its result line
read as a resolve body. Nothing here touches the database.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bugtracker.errors import flatten_errors
from reports.serializers import ResolveSerializer

from .models import RunOutcome

OUTPUT_TAIL_BYTES = 16 * 1024
KILL_GRACE_SECONDS = 5.0
WITHHELD_FROM_RUNNER = frozenset({"SECRET_KEY", "DATABASE_URL", "CACHE_URL"})


@dataclass
class RunResult:
    outcome: str
    exit_code: int | None
    output_tail: str
    error: str = ""
    last_stdout_line: str = ""
    duration: float = 0.0
    lease_lost: bool = False
    aborted: bool = False
    # The command never started (missing, not executable, bad interpreter): the operator's
    # error, never counted against the report.
    spawn_failed: bool = False


class _Tail:
    """The last `limit` bytes of a process's output, fed by reader threads."""

    def __init__(self, limit: int = OUTPUT_TAIL_BYTES):
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self.last_stdout_line = b""

    def add(self, chunk: bytes, *, stdout: bool) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= self.limit:
                self._size -= len(self._chunks.popleft())
            if stdout and chunk.strip():
                self.last_stdout_line = chunk

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)
        return data[-self.limit :].decode("utf-8", errors="replace")


def _pump(stream, tail: _Tail, *, stdout: bool) -> None:
    try:
        for line in iter(lambda: stream.readline(OUTPUT_TAIL_BYTES), b""):
            tail.add(line, stdout=stdout)
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


def _feed(stream, data: bytes) -> None:
    try:
        stream.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass  # the process does not read its input; that is its business
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_command(
    *,
    argv: Sequence[str],
    stdin: bytes,
    env: Mapping[str, str],
    timeout: float,
    tick_seconds: float = 30.0,
    on_tick: Callable[[], bool] | None = None,
    abort: threading.Event | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> RunResult:
    """Run `argv` in its own session with `stdin`, keeping an output tail.

    Every `tick_seconds`, `on_tick()` runs (the lease heartbeat); when it returns False, or
    `abort` is set, or `timeout` passes, the whole process group gets SIGTERM, then SIGKILL
    after `kill_grace` seconds.
    """
    started = time.monotonic()
    tail = _Tail()
    try:
        process = subprocess.Popen(  # the operator's own configured command
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:
        return RunResult(
            outcome=RunOutcome.CRASHED,
            exit_code=None,
            output_tail="",
            error=f"Could not start the remediation command: {exc}",
            duration=time.monotonic() - started,
            spawn_failed=True,
        )
    threads = [
        threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True),
        threading.Thread(
            target=_pump, args=(process.stdout, tail), kwargs={"stdout": True}, daemon=True
        ),
        threading.Thread(
            target=_pump, args=(process.stderr, tail), kwargs={"stdout": False}, daemon=True
        ),
    ]
    for thread in threads:
        thread.start()

    deadline = started + timeout
    next_tick = started + tick_seconds
    stopped_because = None
    while True:
        now = time.monotonic()
        wait = min(deadline, next_tick) - now
        if abort is not None:
            wait = min(wait, 0.2)
        try:
            process.wait(timeout=max(0.0, wait))
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if abort is not None and abort.is_set():
            stopped_because = "aborted"
        elif now >= deadline:
            stopped_because = "timed_out"
        elif now >= next_tick:
            next_tick = now + tick_seconds
            if on_tick is not None and on_tick() is False:
                stopped_because = "lease_lost"
        if stopped_because:
            _kill_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=kill_grace)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid, signal.SIGKILL)
                process.wait()
            break

    # Whatever the command left behind in its group goes too, so the pipes close.
    _kill_group(process.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=kill_grace)
    duration = time.monotonic() - started
    returncode = process.returncode
    last_line = tail.last_stdout_line.decode("utf-8", errors="replace").strip()
    output = tail.text()
    if stopped_because == "timed_out":
        return RunResult(
            outcome=RunOutcome.TIMED_OUT,
            exit_code=None,
            output_tail=output,
            error=f"Timed out after {timeout:g}s; the process group was killed.",
            duration=duration,
        )
    if stopped_because in ("lease_lost", "aborted"):
        return RunResult(
            outcome=RunOutcome.CRASHED,
            exit_code=None,
            output_tail=output,
            error=(
                "The lease was lost during the run; the process group was killed."
                if stopped_because == "lease_lost"
                else "The worker stopped during the run; the process group was killed."
            ),
            duration=duration,
            lease_lost=stopped_because == "lease_lost",
            aborted=stopped_because == "aborted",
        )
    if returncode < 0:
        return RunResult(
            outcome=RunOutcome.CRASHED,
            exit_code=None,
            output_tail=output,
            error=f"Killed by signal {-returncode}.",
            duration=duration,
        )
    if returncode != 0:
        return RunResult(
            outcome=RunOutcome.FAILED,
            exit_code=returncode,
            output_tail=output,
            error=f"Exited with status {returncode}.",
            last_stdout_line=last_line,
            duration=duration,
        )
    return RunResult(
        outcome=RunOutcome.SUCCEEDED,
        exit_code=0,
        output_tail=output,
        last_stdout_line=last_line,
        duration=duration,
    )


class InvalidResult(ValueError):
    """The command's result line was refused; the message says why."""


def parse_result_line(line: str) -> dict[str, Any]:
    """The result a remediation prints as its last stdout line, validated as the API's resolve
    validates its body (`ResolveSerializer`: `resolution_notes`, `commit_shas`, `verify`,
    `resolved_in_release`; unknown fields refused). A line that is not a JSON object is plain
    output: {}. A JSON object that fails validation, or a line that starts like one but is not
    JSON, raises InvalidResult."""
    text = (line or "").strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        if text.startswith("{"):
            raise InvalidResult(f"The result line is not valid JSON: {exc}.") from None
        return {}
    if not isinstance(data, dict):
        return {}
    serializer = ResolveSerializer(data=data)
    if not serializer.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(m.rstrip('.') for m in messages)}"
            for name, messages in flatten_errors(serializer.errors).items()
        )
        raise InvalidResult(f"The result line was refused: {problems}.")
    return dict(serializer.validated_data)


def command_problem(argv: Sequence[str]) -> str | None:
    """Why `argv` cannot be started, or None when its program exists and is executable
    (an empty command is not a problem: it means no automation)."""
    if not argv:
        return None
    program = argv[0]
    if os.sep not in program:
        if shutil.which(program) is None:
            return f"REMEDIATION_COMMAND: {program!r} is not found on PATH."
        return None
    if not os.path.exists(program):
        return f"REMEDIATION_COMMAND: {program} does not exist."
    if os.path.isdir(program):
        return f"REMEDIATION_COMMAND: {program} is a directory, not a program."
    if not os.access(program, os.X_OK):
        return f"REMEDIATION_COMMAND: {program} is not executable."
    return None


def command_signature(argv: Sequence[str]) -> tuple | None:
    """What identifies the installed program (path, mtime, size, mode): a program that could
    not start is tried again only once this changes."""
    if not argv:
        return None
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    try:
        stat = os.stat(program or "")
    except OSError:
        return None
    return (program, stat.st_mtime_ns, stat.st_size, stat.st_mode)


def runner_environment(report_id) -> dict[str, str]:
    """The worker's environment for the command, without the app's own secrets (the command
    may run untrusted code; it gets the report, not the database), plus BUG_REPORT_ID."""
    env = {k: v for k, v in os.environ.items() if k not in WITHHELD_FROM_RUNNER}
    env["BUG_REPORT_ID"] = str(report_id)
    return env
