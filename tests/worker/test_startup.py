import shutil
import signal
import sys
import time

import pytest
from django.core.management import get_commands

from remediation.startup import serving
from reports.models import BugReport
from tests.factories import make_report

from .processes import PROJECT, STARTED, Child, child_env, free_port, run_manage

MANAGE = ["manage.py"]


def test_runserver_is_the_one_that_says_that_it_serves():
    from django.contrib.staticfiles.management.commands.runserver import Command as Static

    from remediation.management.commands.runserver import Command

    assert get_commands()["runserver"] == "remediation"
    assert issubclass(Command, Static)  # static files are still served by it


def test_gunicorn_workers_say_that_they_serve_from_the_config_hook(monkeypatch):
    import runpy

    from remediation import startup

    calls = []
    monkeypatch.setattr(startup, "serving", calls.append)
    config = runpy.run_path(str(PROJECT / "gunicorn.conf.py"))
    config["post_worker_init"](object())
    assert calls == ["gunicorn"]


def test_nothing_starts_when_the_setting_is_off(settings, monkeypatch):
    from remediation import startup

    started = []
    monkeypatch.setattr(startup, "start_process_worker", lambda: started.append(1))
    settings.WEBHOOK_WORKER = False  # serving() also starts the webhook dispatcher
    settings.BUGTRACKER_WORKER = False
    assert serving("runserver") is False
    settings.BUGTRACKER_WORKER = True
    assert serving("gunicorn") is True
    assert started == [1]
    with pytest.raises(ValueError):
        serving("migrate")


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
