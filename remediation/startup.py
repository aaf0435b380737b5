"""Start-up of the remediation worker inside the processes that serve the app.

The entry points that serve say so themselves; nothing inspects the call stack or argv:

- `runserver` is this app's subclass of Django's command (`management/commands/runserver.py`):
  it calls `serving("runserver")` where the server starts, which with the autoreloader is
  the serving child only, never the parent that watches files;
- gunicorn calls `serving("gunicorn")` from `post_worker_init` in `gunicorn.conf.py`, in each
  worker process after it has loaded the app (with or without --preload).

Every other command, the test runner and `migrate` never start one. The same call sends
`bugtracker.signals.process_serving`, on which other rooms start theirs (the webhook
dispatcher). `manage.py run_worker` runs a worker as a process of its own.
"""

import atexit
import os
import threading

from django.conf import settings

from bugtracker.signals import process_serving

from .worker import RemediationWorker

SERVING_KINDS = ("runserver", "gunicorn")

_process_worker: RemediationWorker | None = None
_process_worker_pid: int | None = None
_process_lock = threading.Lock()


def process_worker() -> RemediationWorker | None:
    """This process's own worker, if one was started here."""
    if _process_worker_pid != os.getpid():
        return None
    return _process_worker


def start_process_worker(**options) -> RemediationWorker:
    """Start this process's worker once (per process id) and stop it cleanly at exit."""
    global _process_worker, _process_worker_pid
    with _process_lock:
        if _process_worker is not None and _process_worker_pid == os.getpid():
            return _process_worker
        worker = RemediationWorker(**options)
        _process_worker, _process_worker_pid = worker, os.getpid()
    worker.start()
    atexit.register(_stop_at_exit, worker)
    return worker


def _stop_at_exit(worker: RemediationWorker) -> None:
    if _process_worker_pid == os.getpid():
        worker.stop(deadline=settings.WORKER_SHUTDOWN_SECONDS)


def serving(kind: str) -> bool:
    """Called by an entry point that serves the app in this process (`kind`: runserver or
    gunicorn): tell the receivers of `process_serving` (the webhook dispatcher), and start
    this process's worker when BUGTRACKER_WORKER is on. True when the worker runs."""
    if kind not in SERVING_KINDS:
        raise ValueError(f"Unknown serving entry point {kind!r}; one of {SERVING_KINDS}.")
    process_serving.send(sender=None, kind=kind)
    if not settings.BUGTRACKER_WORKER:
        return False
    start_process_worker()
    return True
