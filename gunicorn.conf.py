"""Production serving: `make serve`, or `gunicorn bugtracker.wsgi` from the project root.

Everything comes from the environment, like the Django settings:

- HOST / PORT (default 127.0.0.1:8000), or BIND for a full address list (`0.0.0.0:8000,[::]:8000`)
- WEB_CONCURRENCY: worker processes (default: one per core, at least 2)
- GUNICORN_THREADS: threads per worker for ordinary requests (default 4), plus WAIT_SLOTS
  (default 64) for long-polls parked asleep; more than one selects the gthread worker, which
  keeps connections alive between an agent's requests
- DB_POOL_MAX: database connections per worker process in a pool (default 0: one per thread);
  with 64 agents long-polling, a pool keeps submissions at full speed (benchmarks/longpoll.py)
- GUNICORN_TIMEOUT (default 30 s), GUNICORN_KEEPALIVE (default 5 s),
  GUNICORN_MAX_REQUESTS (default 0: never recycle workers)
- GUNICORN_LIMIT_REQUEST_LINE (default 8190, gunicorn's largest; 0 for none): longer request
  lines get gunicorn's own 414 page; up to it, the app answers an over-long URL with its
  documented 414 problem (bugtracker/http.py)
- GUNICORN_ACCESS_LOG: `-` for an access log on stdout (default off: the app logs each
  request's id itself and an access line per request costs throughput)

Each worker process also runs its own remediation worker when BUGTRACKER_WORKER is on
(`post_worker_init` below).
"""

import os


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


def post_worker_init(worker):
    """A gunicorn worker has loaded the app and is about to serve: it says so, and starts
    its own remediation worker when BUGTRACKER_WORKER is on (with --preload too: this runs
    in each worker after the fork)."""
    # Imported here: gunicorn reads this file before the app (and Django) is loaded.
    from remediation.startup import serving

    serving("gunicorn")
