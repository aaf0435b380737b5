import shutil
import signal
import sys
import time

import pytest
from django.core.management import get_commands

from reports.models import BugReport
from reports.worker import serving_process_kind, start_if_serving
from tests.factories import make_report

from .processes import STARTED, Child, child_env, free_port, run_manage

MANAGE = ["manage.py"]


@pytest.mark.parametrize(
    ("argv", "environ", "kind"),
    [
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, "runserver"),  # the autoreloader's child
        (["manage.py", "runserver"], {}, None),  # the autoreloader's parent only watches files
        (["manage.py", "runserver", "--noreload"], {}, "runserver"),
        (["manage.py", "runserver", "0:9000", "--noreload"], {}, "runserver"),
        (["/x/django/__main__.py", "runserver", "--noreload"], {}, "runserver"),
        (["/venv/bin/gunicorn", "bugtracker.wsgi"], {}, "gunicorn"),
        (["/venv/lib/python3.12/site-packages/gunicorn/__main__.py", "app"], {}, "gunicorn"),
        (["manage.py", "migrate"], {"RUN_MAIN": "true"}, None),
        (["manage.py", "bugstatus", "--noreload"], {}, None),
        (["manage.py", "run_worker"], {}, None),
        (["manage.py", "shell"], {}, None),
        (["/venv/bin/pytest", "tests"], {}, None),
        (["manage.py"], {}, None),
        ([], {}, None),
    ],
)
def test_only_processes_that_serve_the_app_count_as_serving(argv, environ, kind):
    assert serving_process_kind(argv, environ) == kind


def test_nothing_starts_when_the_setting_is_off(settings):
    settings.BUGTRACKER_WORKER = False
    assert start_if_serving(["manage.py", "runserver", "--noreload"], {}) is False
    settings.BUGTRACKER_WORKER = True
    assert start_if_serving(["manage.py", "migrate"], {}) is False


@pytest.mark.django_db(transaction=True)
def test_migrate_bugstatus_and_other_commands_start_no_worker(tmp_path):
    report = make_report(automation_enabled=True, metadata={"mode": "succeed"})
    log = tmp_path / "runs.log"
    env = child_env(log)
    commands = [["migrate", "--noinput"], ["check"], ["showmigrations", "reports"]]
    if "bugstatus" in get_commands():
        commands += [["bugstatus"], ["bugstatus", "--json"]]
    for command in commands:
        result = run_manage(*command, env=env)
        assert result.returncode == 0, result.stderr
        assert STARTED not in result.stdout + result.stderr, command
    time.sleep(0.5)
    assert not log.exists()
    report.refresh_from_db()
    assert report.version == 1 and report.claim_holder is None


@pytest.mark.django_db(transaction=True)
def test_runserver_noreload_starts_one_worker_that_works_the_queue(tmp_path):
    report = make_report(automation_enabled=True, metadata={"mode": "succeed"})
    env = child_env(tmp_path / "runs.log")
    server = Child.manage(
        "runserver", f"127.0.0.1:{free_port()}", "--noreload", env=env, output=tmp_path / "out"
    )
    try:
        server.wait_for(lambda: server.started_pids(), what="the worker to start")
        assert server.started_pids() == [server.pid]
        server.wait_for(
            lambda: BugReport.objects.get(pk=report.pk).status == "resolved",
            what="the report to be resolved",
        )
    finally:
        returncode = server.stop(signal.SIGINT)
    assert returncode in (0, 1, -signal.SIGINT), server.text()
    assert "Remediation worker" in server.text() and "stopped" in server.text()
    assert report.runs.get().runner.endswith(f":{server.pid}")


@pytest.mark.django_db(transaction=True)
def test_runserver_with_the_autoreloader_starts_the_worker_in_the_serving_child_only(tmp_path):
    env = child_env(tmp_path / "runs.log")
    server = Child.manage("runserver", f"127.0.0.1:{free_port()}", env=env, output=tmp_path / "out")
    try:
        server.wait_for(lambda: server.started_pids(), what="the worker to start")
        time.sleep(2)  # a second start would have shown by now
        pids = server.started_pids()
        assert len(pids) == 1 and pids[0] != server.pid, server.text()
    finally:
        server.signal_group(signal.SIGINT)
        server.stop(signal.SIGINT)


gunicorn = shutil.which("gunicorn", path=str(__import__("pathlib").Path(sys.executable).parent))


@pytest.mark.skipif(gunicorn is None, reason="gunicorn is not installed")
@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
@pytest.mark.django_db(transaction=True)
def test_each_gunicorn_worker_starts_its_own_worker_and_stops_it_on_shutdown(tmp_path, preload):
    reports = [make_report(automation_enabled=True, metadata={"mode": "succeed"}) for _ in range(4)]
    env = child_env(tmp_path / "runs.log")
    argv = [gunicorn, "bugtracker.wsgi:application", "-w", "2", "-b", f"127.0.0.1:{free_port()}"]
    server = Child([*argv, *(["--preload"] if preload else [])], env, tmp_path / "out")
    try:
        server.wait_for(lambda: len(server.started_pids()) >= 2, what="two workers to start")
        server.wait_for(
            lambda: BugReport.objects.filter(status="resolved").count() == 4,
            what="every report to be resolved",
        )
        pids = server.started_pids()
        assert len(set(pids)) == 2 and server.pid not in pids, server.text()
    finally:
        returncode = server.stop(signal.SIGTERM)
    assert returncode == 0, server.text()
    assert len(server.lines("stopped.")) == 2, server.text()
    for report in reports:
        assert report.runs.count() == 1
