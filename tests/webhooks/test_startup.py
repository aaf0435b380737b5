"""The dispatcher runs where the app is served: the entry points' `serving()` (runserver's
command, gunicorn's post_worker_init) tells it through bugtracker.signals.process_serving."""

from remediation import startup
from webhooks import dispatcher


def test_the_dispatcher_starts_when_a_process_says_it_serves(settings, monkeypatch):
    started = []
    monkeypatch.setattr(dispatcher, "start_process_dispatcher", lambda: started.append(1))
    monkeypatch.setattr(startup, "start_process_worker", lambda: None)
    settings.BUGTRACKER_WORKER = False  # the dispatcher does not ride on the remediation worker
    settings.WEBHOOK_WORKER = True
    startup.serving("gunicorn")
    assert started == [1]
    settings.WEBHOOK_WORKER = False
    startup.serving("runserver")
    assert started == [1]


def test_a_process_that_does_not_serve_runs_no_dispatcher():
    # The test runner is such a process: nothing said it serves.
    assert dispatcher.process_dispatcher() is None
