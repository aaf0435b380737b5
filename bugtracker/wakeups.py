"""Parked requests and what wakes them: the plumbing of a long-poll.

A request that waits for something (claim-next's `wait`, the changes feed's `wait`) parks its
thread on a Waiter, without holding a database connection, until it is woken or its re-check
interval passes; then it looks again. What wakes it:

- `Channel(listen=True)` on PostgreSQL: one listener thread per process LISTENs on the
  channel (its own connection) and hands each notification to the first parked waiter whose
  `match` accepts the payload, then moves that waiter to the back (one wake-up per
  notification: 64 waiting agents do not all run a claim for every new report). The listener
  starts with the first waiter and stops when none has waited for LISTENER_IDLE_SECONDS.
- Otherwise (SQLite, or a channel nobody notifies) waiters only re-check: polling.

A parked request holds one server thread that sleeps (see the README's "Long-poll" for the
serving model and its measurements).
"""

import json
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection, connections
from rest_framework import exceptions

from .deadline import restart_deadline

logger = logging.getLogger("bugtracker.wakeups")

LISTENER_IDLE_SECONDS = 10.0


class TooManyWaiters(exceptions.APIException):
    status_code = 503
    default_detail = "Too many requests are waiting on this instance; retry shortly."
    default_code = "too-many-waiters"
    wait = 1


class Waiter:
    def __init__(self, match: Callable[[dict], bool]):
        self.match = match
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds; True when woken. The request's database
        deadline starts again after the sleep: only time spent on the database counts."""
        woken = self._event.wait(max(0.0, timeout))
        self._event.clear()
        restart_deadline()
        return woken


_CHANNELS: list["Channel"] = []

# Threads of this process allowed to keep their database connection between requests.
_keepers = threading.local()
_kept = 0
_kept_lock = threading.Lock()


def keep_or_close_connection(**kwargs) -> None:
    """request_finished: only settings.DB_PERSISTENT_CONNECTIONS threads per process keep a
    persistent connection; any other thread (one of the WAIT_SLOTS threads long-polls park
    in, serving an ordinary request meanwhile) closes its own at the end of the request.
    Without this a gunicorn worker's GUNICORN_THREADS + WAIT_SLOTS threads would each hold a
    connection: 2 workers x 68 threads is past PostgreSQL's default max_connections (100)."""
    global _kept
    if getattr(_keepers, "kept", False) or connection.connection is None:
        return
    with _kept_lock:
        if _kept < settings.DB_PERSISTENT_CONNECTIONS:
            _kept += 1
            _keepers.kept = True
            return
    release_connection()


def release_connection() -> None:
    """Give this thread's database connection back while it sleeps (many parked requests
    must not hold many connections); Django reconnects on the next query."""
    if not connection.in_atomic_block:
        connection.close()


def _listener_params() -> dict:
    """psycopg.connect() arguments for the default database (Django's, minus its own hooks)."""
    params = connections["default"].get_connection_params()
    return {
        k: v for k, v in params.items() if isinstance(v, str | int) and k != "prepare_threshold"
    }


def parked() -> int:
    """Requests parked in this process, on every channel."""
    return sum(channel.waiting() for channel in _CHANNELS)


class Channel:
    """Parked waiters of one kind, and (on PostgreSQL, when `listen`) their listener.

    At most settings.WAIT_SLOTS requests park per process, across channels: the server's
    threads beyond those stay free for everything else (gunicorn.conf.py adds them).
    """

    def __init__(self, name: str, *, listen: bool = True):
        self.name = name
        self.listen = listen
        self._waiters: list[Waiter] = []
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = threading.Event()
        _CHANNELS.append(self)

    def park(self, match: Callable[[dict], bool] = lambda payload: True) -> Waiter:
        """A new waiter, registered before its first look (a notification that arrives while
        it looks is kept for its first sleep). TooManyWaiters beyond the slots."""
        waiter = Waiter(match)
        if parked() >= settings.WAIT_SLOTS:
            raise TooManyWaiters()
        with self._lock:
            self._waiters.append(waiter)
            if self.listen and connection.vendor == "postgresql":
                self._ensure_listener()
        return waiter

    def leave(self, waiter: Waiter) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def dispatch(self, payload: dict) -> bool:
        """Wake the longest-parked waiter that `payload` matches; False when none does."""
        with self._lock:
            for index, waiter in enumerate(self._waiters):
                if waiter.match(payload):
                    self._waiters.append(self._waiters.pop(index))
                    waiter.wake()
                    return True
        return False

    def wake_all(self) -> None:
        with self._lock:
            for waiter in self._waiters:
                waiter.wake()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the listener (tests, shutdown); the next waiter starts it again."""
        thread = self._listener
        self._stop.set()
        if thread is not None:
            thread.join(timeout)
        self._stop.clear()

    def _ensure_listener(self) -> None:
        if self._listener is None or not self._listener.is_alive():
            self._listener = threading.Thread(
                target=self._listen, name=f"listen-{self.name}", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        import psycopg  # only on PostgreSQL; the SQLite default does not need the driver

        idle_since = None
        while not self._stop.is_set():
            try:
                with psycopg.connect(**_listener_params(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.name}")
                    self.listening.set()
                    # Anything committed while not listening was not announced: look again.
                    self.wake_all()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5, stop_after=100):
                            self._deliver(notify.payload)
                        if self.waiting():
                            idle_since = None
                        elif idle_since is None:
                            idle_since = time.monotonic()
                        elif time.monotonic() - idle_since > LISTENER_IDLE_SECONDS:
                            with self._lock:  # park() starts a new listener after this
                                if not self._waiters:
                                    self._listener = None
                                    return
                            idle_since = None
            except Exception as error:  # the database went away: waiters keep re-checking
                logger.warning("listener on %s: %s; reconnecting", self.name, error)
                self._stop.wait(1.0)
            finally:
                self.listening.clear()

    def _deliver(self, raw: str) -> None:
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        self.dispatch(payload)
