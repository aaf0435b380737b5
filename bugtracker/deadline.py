"""A deadline on every web request's PostgreSQL waits.

The server's statement and lock timeouts answer a slow query, and TCP keepalives and
`tcp_user_timeout` notice a network that drops packets. Neither helps when something
between the app and the database keeps acknowledging and never answers (a stuck
connection pooler or proxy, a half-dead load balancer): the request would wait forever,
and a gthread worker never times out one request. Here a watchdog thread cuts (shuts down)
the connection of a request still running after DB_REQUEST_DEADLINE seconds; the query
waiting on it fails at once, and the API answers 503 problem+json with Retry-After
(bugtracker/errors.py). The next request opens a fresh connection.
"""

import contextlib
import itertools
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import connections

logger = logging.getLogger("bugtracker.deadline")

TICK_SECONDS = 0.25


class _Watchdog:
    def __init__(self):
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, object]] = {}
        self._tokens = itertools.count()
        self._pid: int | None = None

    def arm(self, wrapper, seconds: float) -> int:
        with self._lock:
            if self._pid != os.getpid():  # first request of this process (or of a fork)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="db-deadline", daemon=True).start()
            token = next(self._tokens)
            self._armed[token] = (time.monotonic() + seconds, wrapper)
            return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                expired = [t for t, (deadline, _) in self._armed.items() if deadline <= now]
                wrappers = [self._armed.pop(t)[1] for t in expired]
            for wrapper in wrappers:
                _cut(wrapper)


def _cut(wrapper) -> None:
    """Shut the connection's socket down under the thread blocked on it: its read returns
    at once and psycopg raises OperationalError. A duplicate descriptor, so the socket is
    still closed by its owner."""
    connection = wrapper.connection
    if connection is None:
        return
    try:
        fd = connection.pgconn.socket
    except Exception:  # already closed: nothing is waiting on it
        return
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)
        logger.warning(
            "database silent for %.0f s in a request: connection cut",
            settings.DB_REQUEST_DEADLINE,
        )


_watchdog = _Watchdog()


_current = threading.local()


def restart_deadline() -> None:
    """Give this request's database waits a fresh deadline from now: a long-poll that slept
    (without a connection) must not be cut for the time it spent asleep."""
    token = getattr(_current, "token", None)
    if token is None:
        return
    _watchdog.disarm(token)
    _current.token = _watchdog.arm(connections["default"], settings.DB_REQUEST_DEADLINE)


class DatabaseDeadlineMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        wrapper = connections["default"]
        self.seconds = settings.DB_REQUEST_DEADLINE if wrapper.vendor == "postgresql" else 0

    def __call__(self, request):
        if not self.seconds:
            return self.get_response(request)
        # connections["default"] is this thread's own connection wrapper.
        _current.token = _watchdog.arm(connections["default"], self.seconds)
        try:
            return self.get_response(request)
        finally:
            _watchdog.disarm(_current.token)
            _current.token = None
