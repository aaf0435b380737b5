"""Production serving: `make serve`, or `gunicorn bugtracker.wsgi` from the project root.

Everything comes from the environment, like the Django settings:

- HOST / PORT (default 127.0.0.1:8000), or BIND for a full address list (`0.0.0.0:8000,[::]:8000`)
- WEB_CONCURRENCY: worker processes (default: one per core, at least 2)
- GUNICORN_THREADS: threads per worker for ordinary requests (default 4), plus WAIT_SLOTS
  (default 64) for long-polls parked asleep; more than one selects the gthread worker, which
  keeps connections alive between an agent's requests
- DB_POOL_MAX: database connections per worker process in a pool, on PostgreSQL (default here
  3 x GUNICORN_THREADS; 0: one persistent connection per thread, as commands and tests keep):
  with 64 agents long-polling, a pool keeps submissions at full speed (benchmarks/longpoll.py)
- GUNICORN_TIMEOUT (default 30 s), GUNICORN_KEEPALIVE (default 5 s),
  GUNICORN_MAX_REQUESTS (default 0: never recycle workers)
- GUNICORN_LIMIT_REQUEST_LINE (default 8190, gunicorn's largest; 0 for none): longer request
  lines get gunicorn's own 414 page; up to it, the app answers an over-long URL with its
  documented 414 problem (bugtracker/http.py)
- GUNICORN_ACCESS_LOG: `-` for an access log on stdout (default off: the app logs each
  request's id itself and an access line per request costs throughput)

Each worker process also runs its own remediation worker when BUGTRACKER_WORKER is on, and
its webhook dispatcher when WEBHOOK_WORKER is on (`post_worker_init` below).

Metrics (GET /metrics) add up every worker process's counters through files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode): the master sets it up when
it loads this file, before the app and any worker, empties it (counters of an earlier run would
otherwise be added in), and removes a directory it made itself when it exits.
"""

import glob
import os
import shutil
import tempfile


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


bind = [
    address.strip()
    for address in os.environ.get(
        "BIND", f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
    ).split(",")
    if address.strip()
]
workers = _int("WEB_CONCURRENCY", max(2, os.cpu_count() or 1))
# Long-polls park a thread each (asleep, without a database connection): WAIT_SLOTS more
# threads than GUNICORN_THREADS, so 64 waiting agents leave the other threads to everyone else.
working_threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread" if working_threads > 1 else "sync"
threads = working_threads + _int("WAIT_SLOTS", 64) if worker_class == "gthread" else 1
# A request borrows a pooled connection and gives it back when it ends: with per-thread
# connections, ordinary requests would keep landing on threads a long-poll left without one and
# reconnect (gthread hands work to its longest-idle thread). Read by bugtracker/settings.py
# in each worker; SQLite ignores it.
os.environ.setdefault("DB_POOL_MAX", str(3 * working_threads))
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
limit_request_line = _int("GUNICORN_LIMIT_REQUEST_LINE", 8190)
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The app sits behind nothing by default; behind a proxy set FORWARDED_ALLOW_IPS (for the
# scheme) and TRUSTED_PROXIES (how many X-Forwarded-For hops name the client: settings.py).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
wsgi_app = "bugtracker.wsgi:application"


def prepare_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR for this run, emptied (counts of an earlier run would be
    added in), or a fresh temporary one, removed at exit. It must be set before
    prometheus_client is first imported, which picks its storage then: so at config load,
    before the app (even with --preload), and every worker inherits it."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="bugtracker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        _made_dirs.append(path)
    return path


def child_exit(server, worker):
    """A worker's live gauges leave with it; its counters stay in the sums."""
    # Imported here, not at the top: prometheus_client must not be imported before
    # prepare_metrics_dir() has set PROMETHEUS_MULTIPROC_DIR (its storage is chosen then).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for path in _made_dirs:
        shutil.rmtree(path, ignore_errors=True)


_made_dirs: list[str] = []
if __name__ == "__config__":  # gunicorn's master loading this file (not a test reading it)
    prepare_metrics_dir()


def post_worker_init(worker):
    """A gunicorn worker has loaded the app and is about to serve: it says so, and starts
    its own remediation worker when BUGTRACKER_WORKER is on and its webhook dispatcher when
    WEBHOOK_WORKER is on (with --preload too: this runs in each worker after the fork)."""
    # Imported here: gunicorn reads this file before the app (and Django) is loaded.
    from remediation.startup import serving

    serving("gunicorn")
