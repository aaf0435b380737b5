"""The webhook dispatcher: a scanner that takes due deliveries from the outbox and a WorkQueue
(bugtracker/work_queue.py) of sender threads, plus the alert scan, in every process that
serves the app (WEBHOOK_WORKER) or in `manage.py deliver_webhooks`.

The database is the source of truth: the queue carries delivery ids, a taken delivery is
leased (its due time moved past the try), and a process killed mid-try loses nothing: the
lease ends, the delivery is due again, and it goes out with the same webhook-id.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from bugtracker.work_queue import WorkQueue, close_stale_connections

from . import outbox, services

logger = logging.getLogger("webhooks.dispatcher")

PREFETCH = 8  # deliveries an idle sender takes at a time


@dataclass(frozen=True)
class DeliveryWorkItem:
    """Deliveries one sender tries in turn (their rows read and their tries recorded
    together)."""

    delivery_ids: tuple[uuid.UUID, ...]
    priority: int = 100


class WebhookDispatcher:
    def __init__(
        self,
        *,
        threads: int | None = None,
        poll_seconds: float | None = None,
        alert_seconds: float | None = None,
    ):
        self.threads = threads or settings.WEBHOOK_THREADS
        self.poll_seconds = settings.WEBHOOK_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.alert_seconds = (
            settings.WEBHOOK_ALERT_SECONDS if alert_seconds is None else alert_seconds
        )
        self.queue = WorkQueue(name="webhooks", threads=self.threads)
        self.queue.register(DeliveryWorkItem, self._deliver)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._scanner: threading.Thread | None = None
        self._last_alert_scan = -1e18

    @property
    def alive(self) -> bool:
        return bool(self._scanner and self._scanner.is_alive() and self.queue.alive)

    def start(self) -> None:
        if self._scanner is not None:
            return
        # The first alert scan comes one interval after start, not in every process's
        # start-up burst.
        self._last_alert_scan = time.monotonic()
        self.queue.start()
        self._scanner = threading.Thread(target=self._loop, name="webhook-scanner", daemon=True)
        self._scanner.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, deadline: float = 10.0) -> None:
        """Stop taking deliveries and let tries in progress finish until `deadline`; those
        taken but not started stay leased and go out when their lease ends."""
        self._stop.set()
        self._wake.set()
        if self._scanner is not None:
            self._scanner.join(timeout=max(deadline, 1.0))
        self.queue.shutdown(deadline=deadline)

    def scan_once(self) -> int:
        """Take due deliveries for the idle senders, PREFETCH each (read, rendered and
        recorded together), and queue them."""
        ids = services.deliveries_claim_due(limit=self.queue.free_slots() * PREFETCH)
        for start in range(0, len(ids), PREFETCH):
            self.queue.enqueue(DeliveryWorkItem(delivery_ids=tuple(ids[start : start + PREFETCH])))
        return len(ids)

    def run_alert_scan(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_alert_scan < self.alert_seconds:
            return
        self._last_alert_scan = now
        try:
            services.alerts_scan()
        except Exception:
            logger.exception("Webhook alert scan failed.")

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                close_stale_connections()
                taken = 0
                try:
                    taken = self.scan_once()
                except Exception as exc:
                    logger.warning("Webhook scan failed: %s", exc)
                self.run_alert_scan()
                close_stale_connections()
                if taken and self.queue.free_slots():
                    continue  # more may be due right away
                if not taken:
                    # Idle: hold no connection between looks (one per serving process
                    # would add up against the server's connection limit).
                    connection.close()
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
        finally:
            connection.close()

    def _deliver(self, item: DeliveryWorkItem) -> bool:
        try:
            return services.deliveries_attempt(delivery_ids=list(item.delivery_ids)) > 0
        finally:
            self._wake.set()  # a sender is free again


# Start-up in the processes that serve the app -----------------------------------------------

_dispatcher: WebhookDispatcher | None = None
_dispatcher_pid: int | None = None
_lock = threading.Lock()


def process_dispatcher() -> WebhookDispatcher | None:
    return _dispatcher if _dispatcher_pid == os.getpid() else None


def wake() -> None:
    """After a commit that wrote deliveries: this process's dispatcher looks now."""
    dispatcher = process_dispatcher()
    if dispatcher is not None:
        dispatcher.wake()


def start_process_dispatcher(**options) -> WebhookDispatcher:
    global _dispatcher, _dispatcher_pid
    with _lock:
        if _dispatcher is not None and _dispatcher_pid == os.getpid():
            return _dispatcher
        dispatcher = WebhookDispatcher(**options)
        _dispatcher, _dispatcher_pid = dispatcher, os.getpid()
    outbox.set_waker(dispatcher.wake)
    dispatcher.start()
    atexit.register(_stop_at_exit, dispatcher)
    return dispatcher


def _stop_at_exit(dispatcher: WebhookDispatcher) -> None:
    if _dispatcher_pid == os.getpid():
        dispatcher.stop(deadline=settings.WORKER_SHUTDOWN_SECONDS)


def on_serving(sender=None, *, kind: str, **kwargs) -> bool:
    """Receiver of `bugtracker.signals.process_serving` (this process serves the app, said by
    its entry point): start the dispatcher when WEBHOOK_WORKER is on, once per process."""
    if not settings.WEBHOOK_WORKER:
        return False
    start_process_dispatcher()
    return True
