"""A reusable in-process work queue: a priority `queue.Queue` served by daemon threads.

Payloads are typed (a dataclass per kind of work) and each type has one handler. The
queue only carries small payloads (ids); whatever it works on lives in the database,
so a process that dies loses nothing but the items it had not started.

    work = WorkQueue(name="remediation", threads=2)
    work.register(BugReportWorkItem, handle_report)
    work.start()
    work.enqueue(BugReportWorkItem(report_id=..., priority=0, retry_count=0))
    ...
    leftovers = work.shutdown(deadline=30)
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections

logger = logging.getLogger("bugtracker.work_queue")

DEFAULT_PRIORITY = 100
DURATION_WINDOW = 500

# Queued ahead of everything at shutdown so idle threads wake up and leave.
_STOP = object()


@dataclass(frozen=True)
class QueueMetrics:
    name: str
    alive: bool
    threads: int
    depth: int
    in_flight: int
    processed: int
    failed: int
    duration_p50: float | None
    duration_p95: float | None
    window: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alive": self.alive,
            "threads": self.threads,
            "depth": self.depth,
            "in_flight": self.in_flight,
            "processed": self.processed,
            "failed": self.failed,
            "duration_p50": self.duration_p50,
            "duration_p95": self.duration_p95,
            "duration_window": self.window,
        }


def close_stale_connections() -> None:
    """Django's `close_old_connections()` for a background thread, but never a connection in
    the middle of a transaction (a caller's `atomic()` block, or a test's)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class QueueClosed(RuntimeError):
    """Enqueue after shutdown began."""


class WorkQueue:
    """Priority queue + N daemon threads, one handler per payload type, metrics, clean stop.

    A lower `priority` runs first (the payload's own `priority` attribute when it has one);
    equal priorities run in arrival order. Handlers run with `close_stale_connections()`
    before and after each item, so a thread never keeps a broken or stale connection.
    A handler that raises or returns False counts as failed; the thread goes on with
    the next item.
    """

    def __init__(
        self, *, name: str = "work", threads: int = 2, duration_window: int = DURATION_WINDOW
    ):
        if threads < 1:
            raise ValueError("A work queue needs at least one thread.")
        self.name = name
        self.thread_count = threads
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._handlers: dict[type, Callable[[Any], Any]] = {}
        self._threads: list[threading.Thread] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False
        self._pending = 0  # queued, not yet picked up by a thread
        self._in_flight = 0
        self._processed = 0
        self._failed = 0
        self._durations: deque[float] = deque(maxlen=duration_window)
        self._idle = threading.Condition(self._lock)

    # Set-up ---------------------------------------------------------------------------

    def register(self, payload_type: type, handler: Callable[[Any], Any]) -> None:
        self._handlers[payload_type] = handler

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        for index in range(self.thread_count):
            thread = threading.Thread(
                target=self._serve, name=f"{self.name}-{index + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    # Use ------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return (
            self._started and not self._stop.is_set() and any(t.is_alive() for t in self._threads)
        )

    def enqueue(self, payload: Any, *, priority: int | None = None) -> None:
        if type(payload) not in self._handlers:
            raise TypeError(f"No handler registered for {type(payload).__name__}.")
        if self._stop.is_set():
            raise QueueClosed(f"Work queue {self.name} is shutting down.")
        if priority is None:
            priority = getattr(payload, "priority", DEFAULT_PRIORITY)
        with self._lock:
            self._pending += 1
        self._queue.put((priority, next(self._sequence), payload))

    @property
    def depth(self) -> int:
        with self._lock:
            return self._pending

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def free_slots(self) -> int:
        """How many more items the threads could start right now."""
        with self._lock:
            return max(0, self.thread_count - self._in_flight - self._pending)

    def metrics(self) -> QueueMetrics:
        with self._lock:
            durations = list(self._durations)
            depth, in_flight = self._pending, self._in_flight
            processed, failed = self._processed, self._failed
        return QueueMetrics(
            name=self.name,
            alive=self.alive,
            threads=self.thread_count,
            depth=depth,
            in_flight=in_flight,
            processed=processed,
            failed=failed,
            duration_p50=percentile(durations, 0.50),
            duration_p95=percentile(durations, 0.95),
            window=len(durations),
        )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running; False if `timeout` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._in_flight or self._pending:
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(timeout=0.1 if remaining is None else min(0.1, remaining))
        return True

    # Shutdown -------------------------------------------------------------------------

    def shutdown(
        self,
        *,
        deadline: float = 30.0,
        on_deadline: Callable[[], Any] | None = None,
        grace: float = 10.0,
    ) -> list[Any]:
        """Stop taking work, let queued and running items finish until `deadline` seconds
        have passed, then join the threads. Returns the payloads that never started, so
        the owner can give back whatever they stood for.

        When items are still running at the deadline, `on_deadline()` is called (the owner
        tells its handlers to give up) and the threads get `grace` more seconds to leave.
        """
        self._stop.set()
        end = time.monotonic() + max(0.0, deadline)
        drained = self.wait_idle(timeout=max(0.0, end - time.monotonic()))
        leftovers = self._drain_queue()
        for _ in self._threads:
            self._queue.put((-math.inf, next(self._sequence), _STOP))
        if not drained and on_deadline is not None:
            on_deadline()
        end = max(end, time.monotonic() + 1.0) + (grace if not drained else 0.0)
        for thread in self._threads:
            thread.join(timeout=max(0.0, end - time.monotonic()))
        still_running = [t.name for t in self._threads if t.is_alive()]
        if still_running:
            logger.warning(
                "Work queue %s: %d thread(s) still busy after the %.0fs deadline: %s",
                self.name,
                len(still_running),
                deadline,
                ", ".join(still_running),
            )
        return leftovers

    def _drain_queue(self) -> list[Any]:
        leftovers = []
        while True:
            try:
                _, _, payload = self._queue.get_nowait()
            except queue.Empty:
                return leftovers
            if payload is not _STOP:
                leftovers.append(payload)
                with self._lock:
                    self._pending -= 1
            self._queue.task_done()

    # Threads --------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while True:
                _, _, payload = self._queue.get()
                if payload is _STOP:
                    self._queue.task_done()
                    return
                with self._lock:
                    self._pending -= 1
                    self._in_flight += 1
                try:
                    self._run_one(payload)
                finally:
                    with self._idle:
                        self._in_flight -= 1
                        self._idle.notify_all()
                    self._queue.task_done()
        finally:
            connection.close()

    def _run_one(self, payload: Any) -> None:
        handler = self._handlers[type(payload)]
        started = time.monotonic()
        ok = False
        close_stale_connections()
        try:
            ok = handler(payload) is not False
        except Exception:
            logger.exception("Work queue %s: handler failed for %r", self.name, payload)
        finally:
            close_stale_connections()
            elapsed = time.monotonic() - started
            with self._lock:
                self._durations.append(elapsed)
                if ok:
                    self._processed += 1
                else:
                    self._failed += 1
