"""Claim tokens held for MCP sessions, so they never enter a model's context.

A token is kept per session (an MCP connection) and report; a background thread heartbeats
every kept claim at a third of its lease while its session lasts. When the session closes,
its claims are forgotten and their leases run out on the server, which frees the reports.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

from .api import ApiError, BugtrackerClient

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 900
MIN_BEAT_SECONDS = 1.0


@dataclass
class HeldClaim:
    report_id: str
    token: str = field(repr=False)
    api: BugtrackerClient = field(repr=False)
    lease_seconds: int
    next_beat: float = 0.0

    def schedule(self) -> None:
        self.next_beat = time.monotonic() + max(MIN_BEAT_SECONDS, self.lease_seconds / 3)


class ClaimKeeper:
    """Tokens by session and report id; `tokens()` lets outputs be checked against them."""

    def __init__(self, *, tick: float = 0.5):
        self._lock = threading.Lock()
        self._sessions: dict[int, dict[str, HeldClaim]] = {}
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- kept per session ------------------------------------------------------------------

    def keep(
        self,
        session: object,
        api: BugtrackerClient,
        report_id: str,
        token: str,
        lease_seconds: int | None,
    ) -> None:
        held = HeldClaim(report_id, token, api, lease_seconds or DEFAULT_LEASE_SECONDS)
        held.schedule()
        key = id(session)
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = {}
                # The session's end ends its heartbeats: an MCP connection unwinds its exit
                # stack when it closes; any other object, when it is collected.
                exit_stack = getattr(session, "exit_stack", None)
                if exit_stack is not None:
                    exit_stack.callback(self._forget_session, key)
                weakref.finalize(session, self._forget_session, key)
            self._sessions[key][report_id] = held
        self._start()

    def token(self, session: object, report_id: str) -> str | None:
        with self._lock:
            held = self._sessions.get(id(session), {}).get(report_id)
        return held.token if held else None

    def drop(self, session: object, report_id: str) -> None:
        with self._lock:
            self._sessions.get(id(session), {}).pop(report_id, None)

    def held(self, session: object) -> list[str]:
        with self._lock:
            return sorted(self._sessions.get(id(session), {}))

    def tokens(self) -> set[str]:
        with self._lock:
            return {h.token for claims in self._sessions.values() for h in claims.values()}

    def _forget_session(self, key: int) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    # -- heartbeats ------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="bugtracker-heartbeats", daemon=True
            )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _due(self) -> list[tuple[int, HeldClaim]]:
        now = time.monotonic()
        with self._lock:
            return [
                (key, held)
                for key, claims in self._sessions.items()
                for held in claims.values()
                if held.next_beat <= now
            ]

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            for key, held in self._due():
                self.beat(key, held)

    def beat(self, key: int, held: HeldClaim) -> None:
        held.schedule()
        try:
            held.api.heartbeat(held.report_id, held.token, lease_seconds=held.lease_seconds)
        except ApiError as error:
            if error.status in (404, 409, 428):  # the lease is lost: stop holding it
                log.info("claim on %s lost: %s", held.report_id, error.status)
                with self._lock:
                    claims = self._sessions.get(key, {})
                    if claims.get(held.report_id) is held:
                        del claims[held.report_id]
            else:  # the server is unreachable or busy: try again at the next beat
                log.warning("heartbeat for %s failed: %s", held.report_id, error.status)
