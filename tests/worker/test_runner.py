import json
import os
import sys
import threading
import time

import pytest

from remediation.runner import (
    OUTPUT_TAIL_BYTES,
    InvalidResult,
    command_problem,
    parse_result_line,
    run_command,
    runner_environment,
)

from .helpers import COMMAND, pid_alive


def run_script(tmp_path, mode, *, timeout=10.0, **kwargs):
    report = {"id": "r-1", "title": "Crash on save", "metadata": {"mode": mode}}
    env = {**os.environ, "BUG_REPORT_ID": "r-1", "REMEDIATION_LOG": str(tmp_path / "log")}
    return run_command(
        argv=COMMAND, stdin=json.dumps(report).encode(), env=env, timeout=timeout, **kwargs
    )


def test_exit_zero_succeeds_with_the_last_stdout_line_and_an_output_tail(tmp_path):
    result = run_script(tmp_path, "succeed")
    assert (result.outcome, result.exit_code, result.error) == ("succeeded", 0, "")
    assert parse_result_line(result.last_stdout_line) == {
        "resolution_notes": "Fixed: Crash on save",
        "commit_shas": ["0123abcd"],
        "verify": False,
    }
    assert "looking at Crash on save" in result.output_tail
    assert "a line on stderr" in result.output_tail
    assert (tmp_path / "log").read_text().startswith("r-1 ")


def test_non_zero_exit_fails_with_its_code_and_stderr(tmp_path):
    result = run_script(tmp_path, "fail")
    assert (result.outcome, result.exit_code) == ("failed", 3)
    assert result.error == "Exited with status 3."
    assert "boom: could not reproduce" in result.output_tail


def test_timeout_kills_the_whole_process_group(tmp_path):
    started = time.monotonic()
    result = run_script(tmp_path, "spawn_and_hang", timeout=1.0, kill_grace=1.0)
    assert time.monotonic() - started < 8
    assert (result.outcome, result.exit_code) == ("timed_out", None)
    assert "Timed out after 1s" in result.error
    child = int((tmp_path / "log.d" / "r-1.child").read_text())
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "the grandchild outlived the timeout"


def test_heartbeat_ticks_during_the_run_and_a_lost_lease_stops_it(tmp_path):
    ticks = []

    def on_tick():
        ticks.append(time.monotonic())
        return len(ticks) < 3

    result = run_script(
        tmp_path, "hang", timeout=30, tick_seconds=0.2, on_tick=on_tick, kill_grace=1
    )
    assert len(ticks) == 3
    assert result.lease_lost and result.outcome == "crashed" and result.exit_code is None


def test_abort_stops_a_running_command(tmp_path):
    abort = threading.Event()
    threading.Timer(0.3, abort.set).start()
    result = run_script(tmp_path, "hang", timeout=30, abort=abort, kill_grace=1)
    assert result.aborted and result.outcome == "crashed"


def test_a_command_that_cannot_start_is_a_spawn_failure(tmp_path):
    result = run_command(argv=[str(tmp_path / "missing")], stdin=b"{}", env={}, timeout=5)
    assert (result.outcome, result.exit_code, result.spawn_failed) == ("crashed", None, True)
    assert "Could not start the remediation command" in result.error


def test_command_problem_names_what_is_wrong_with_the_program(tmp_path):
    script = tmp_path / "fixer"
    script.write_text("#!/bin/sh\nexit 0\n")
    assert command_problem([]) is None, "no command is no automation, not a problem"
    assert command_problem([sys.executable, "-c", "pass"]) is None
    assert command_problem(["sh", "-c", "true"]) is None, "a bare name is looked up on PATH"
    assert command_problem(["/nonexistent/fixer"]) == (
        "REMEDIATION_COMMAND: /nonexistent/fixer does not exist."
    )
    assert command_problem([str(script)]) == f"REMEDIATION_COMMAND: {script} is not executable."
    assert command_problem([str(tmp_path)]) == (
        f"REMEDIATION_COMMAND: {tmp_path} is a directory, not a program."
    )
    assert command_problem(["no-such-fixer-anywhere"]) == (
        "REMEDIATION_COMMAND: 'no-such-fixer-anywhere' is not found on PATH."
    )
    script.chmod(0o755)
    assert command_problem([str(script), "--fast"]) is None


def test_output_tail_keeps_only_the_end_of_a_long_output():
    code = "import sys; sys.stdin.read(); print('x' * 100000); print('THE END')"
    result = run_command(
        argv=[sys.executable, "-c", code], stdin=b"", env=dict(os.environ), timeout=10
    )
    assert result.outcome == "succeeded"
    assert len(result.output_tail.encode()) <= OUTPUT_TAIL_BYTES
    assert result.output_tail.endswith("THE END\n")
    assert result.last_stdout_line == "THE END"


def test_a_command_that_ignores_a_large_stdin_does_not_block():
    payload = b"x" * (4 * 1024 * 1024)
    result = run_command(
        argv=[sys.executable, "-c", "print('ok')"], stdin=payload, env=dict(os.environ), timeout=10
    )
    assert result.outcome == "succeeded"


def test_plain_output_is_no_result_line():
    assert parse_result_line("not json") == {}
    assert parse_result_line("[1, 2]") == {}
    assert parse_result_line('"done"') == {}
    assert parse_result_line("") == {}


def test_a_result_line_is_validated_as_the_resolve_body_is():
    assert parse_result_line('{"resolution_notes": "ok", "verify": true}') == {
        "resolution_notes": "ok",
        "verify": True,
    }
    assert parse_result_line('{"commit_shas": ["0123abcd"], "resolved_in_release": "v2"}') == {
        "commit_shas": ["0123abcd"],
        "resolved_in_release": "v2",
        "verify": False,
    }
    with pytest.raises(InvalidResult) as refused:
        parse_result_line('{"commit_shas": ["zz-not-hex"], "extra": 1}')
    assert str(refused.value) == (
        "The result line was refused: commit_shas.0: This value does not match the required "
        "pattern; extra: Unknown field."
    )
    with pytest.raises(InvalidResult, match="resolution_notes: Must be a string"):
        parse_result_line('{"resolution_notes": 5, "commit_shas": "abc", "verify": "yes"}')
    with pytest.raises(InvalidResult, match="not valid JSON"):
        parse_result_line("{'commit_shas': ['abc1']}")


def test_the_command_gets_the_report_id_but_not_the_apps_secrets(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.setenv("GITHUB_TOKEN", "the agent's own")
    env = runner_environment("r-9")
    assert env["BUG_REPORT_ID"] == "r-9"
    assert "DATABASE_URL" not in env and "SECRET_KEY" not in env
    assert env["GITHUB_TOKEN"] == "the agent's own" and env["PATH"] == os.environ["PATH"]
