import os
import subprocess
import sys

from django.conf import settings


def run(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serving_refuses_to_start_without_a_secret_key():
    result = run("import bugtracker.wsgi")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_serving_starts_with_a_key_or_in_debug():
    assert run("import bugtracker.wsgi", SECRET_KEY="k" * 50).returncode == 0
    assert run("import bugtracker.asgi", DEBUG="1").returncode == 0


def test_commands_that_need_no_key_run_without_one():
    code = (
        "import sys; from django.core.management import execute_from_command_line;"
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'bugtracker.settings';"
        "execute_from_command_line(['manage.py', 'makemigrations', '--check', '--dry-run'])"
    )
    result = run(code)
    assert result.returncode == 0, result.stderr


def test_make_serve_without_a_key_says_so_in_one_line_before_touching_the_database(tmp_path):
    database = tmp_path / "serve.sqlite3"
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment["DATABASE_URL"] = f"sqlite:///{database}"
    result = subprocess.run(
        ["make", "--no-print-directory", "serve"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "SECRET_KEY" in lines[0] and "Traceback" not in result.stderr
    assert not database.exists()  # migrate never ran


def manage(*args, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_remediation_command_that_is_not_a_json_list_stops_every_command_with_one_line():
    for value in ("/usr/bin/fixer --fast", '"fixer"', "[1, 2]", '{"argv": []}'):
        for command in (["check"], ["bugstatus"], ["run_worker", "--once"], ["migrate"]):
            result = manage(*command, REMEDIATION_COMMAND=value)
            assert result.returncode == 1, (value, command, result.stdout)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith(
                "Configuration error: REMEDIATION_COMMAND must be a JSON list"
            )
