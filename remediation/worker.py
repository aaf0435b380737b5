"""The remediation worker: a scanner that claims automatable reports, runners that hand each
to `REMEDIATION_COMMAND` (`runner.py`), and the periodic duties (lease sweep, telemetry
enrichment, backlog alerts). Start-up in the serving processes is `startup.py`.

The database is the source of truth: the in-process queue carries only report ids, claims go
through the claim service (row locks), and a worker that dies loses nothing: its leases
expire and another worker takes the reports again.
"""

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from bugtracker.domain import DomainError
from bugtracker.work_queue import WorkQueue, close_stale_connections
from reports.claims import leases_sweep, report_heartbeat
from reports.errors import LeaseLost
from reports.models import BugReport
from reports.selectors import report_list
from reports.serializers import BugReportSerializer
from reports.summary import backlog_alerts
from telemetry.services import enrich_missing_releases

from . import services
from .models import RunOutcome
from .runner import (
    KILL_GRACE_SECONDS,
    InvalidResult,
    RunResult,
    command_problem,
    command_signature,
    parse_result_line,
    run_command,
    runner_environment,
)

logger = logging.getLogger(__name__)

CACHE_PREFIX = "bugtracker:worker:"
CACHE_REGISTRY_KEY = "bugtracker:workers"


def worker_holder() -> str:
    """The claim holder and event actor of this process's worker."""
    return f"{services.WORKER_HOLDER_PREFIX}{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class BugReportWorkItem:
    """One claimed report waiting for a runner. Lower priority runs first (severity rank)."""

    report_id: uuid.UUID
    priority: int = 100
    retry_count: int = 0


def report_document(report: BugReport) -> dict[str, Any]:
    """The report as the API shows it: what the remediation command reads on stdin."""
    shown = report_list().select_related("dedup_group").get(pk=report.pk)
    return BugReportSerializer(shown, context={"now": timezone.now()}).data


@dataclass
class _Duty:
    name: str
    every: float
    run: Callable[[], Any]
    last_at: float = field(default=-1e18)


class RemediationWorker:
    """Scanner thread + a WorkQueue of runner threads + periodic duties, for one process."""

    def __init__(
        self,
        *,
        holder: str | None = None,
        threads: int | None = None,
        poll_seconds: float | None = None,
        lease_seconds: int | None = None,
        command: Sequence[str] | None = None,
        timeout: float | None = None,
        duties: bool = True,
    ):
        self.holder = holder or worker_holder()
        self.threads = threads or settings.WORKER_THREADS
        self.poll_seconds = settings.WORKER_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.lease_seconds = int(lease_seconds or settings.WORKER_LEASE_SECONDS)
        self.command = list(settings.REMEDIATION_COMMAND if command is None else command)
        self.timeout = settings.REMEDIATION_TIMEOUT if timeout is None else timeout
        self.queue = WorkQueue(name="remediation", threads=self.threads)
        self.queue.register(BugReportWorkItem, self.process)
        self.started_at: datetime | None = None
        self.last_scan_at: datetime | None = None
        self.last_scan_claimed = 0
        self.last_backlog_alerts: list[Any] = []
        # Why this worker refuses to run remediations (a command that cannot start), or None.
        self.command_problem: str | None = None
        self._spawn_failure: tuple[tuple | None, str] | None = None
        self._tokens: dict[uuid.UUID, str] = {}
        self._tokens_lock = threading.Lock()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._wake = threading.Event()
        self._scanner: threading.Thread | None = None
        self._duties = (
            [
                _Duty("lease_sweep", settings.WORKER_SWEEP_SECONDS, self._sweep_leases),
                _Duty("telemetry_enrichment", settings.WORKER_ENRICH_SECONDS, self._enrich),
                _Duty("backlog_alerts", settings.WORKER_ALERT_SECONDS, self._check_backlog),
            ]
            if duties
            else []
        )

    # Life cycle -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return bool(self._scanner and self._scanner.is_alive() and self.queue.alive)

    def start(self) -> None:
        if self._scanner is not None:
            return
        if not self.command:
            logger.warning(
                "REMEDIATION_COMMAND is empty: worker %s runs its periodic duties but claims no reports.",
                self.holder,
            )
        self.command_ready()
        self.started_at = timezone.now()
        self.queue.start()
        self._scanner = threading.Thread(
            target=self._scan_loop, name="remediation-scanner", daemon=True
        )
        self._scanner.start()
        logger.info(
            "Remediation worker started as %s (%d runner threads, polling every %gs).",
            self.holder,
            self.threads,
            self.poll_seconds,
        )

    def stop(self, *, deadline: float = 30.0) -> None:
        """Stop claiming, let running work finish for up to `deadline` seconds, then kill what
        is still running and give every claim this worker holds back."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        logger.info(
            "Remediation worker %s stopping (up to %gs for running work).", self.holder, deadline
        )
        if self._scanner is not None:
            self._scanner.join(timeout=max(deadline, 1.0))
        leftovers = self.queue.shutdown(
            deadline=deadline, on_deadline=self._abort.set, grace=KILL_GRACE_SECONDS + 5
        )
        for item in leftovers:
            self._give_back(item.report_id, "The worker stopped before starting this run.")
        with self._tokens_lock:
            remaining = list(self._tokens)
        for report_id in remaining:
            self._give_back(report_id, "The worker stopped; the report goes back to the queue.")
        self._unpublish()
        logger.info("Remediation worker %s stopped.", self.holder)

    def _give_back(self, report_id: uuid.UUID, reason: str) -> None:
        token = self._take_token(report_id)
        if token is None:
            return
        try:
            services.report_run_abandoned(
                report_id=report_id,
                run_id=None,
                actor=self.holder,
                claim_token=token,
                reason=reason,
            )
        except Exception:
            logger.exception("Could not give report %s back; its lease will expire.", report_id)

    def _take_token(self, report_id) -> str | None:
        with self._tokens_lock:
            return self._tokens.pop(report_id, None)

    # Scanning ---------------------------------------------------------------------------

    def _scan_loop(self) -> None:
        try:
            while not self._stop.is_set():
                close_stale_connections()
                try:
                    self.scan_once()
                except Exception:
                    logger.exception("Worker %s: scan failed.", self.holder)
                self.run_duties()
                self._publish()
                close_stale_connections()
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
        finally:
            connection.close()

    def command_ready(self) -> bool:
        """Check the command (at start and before each claim): a worker whose command cannot
        start claims nothing, says so in one log line and in its status, and takes up work
        again by itself once the command is fixed."""
        problem = command_problem(self.command)
        if problem is None and self._spawn_failure is not None:
            signature, message = self._spawn_failure
            if signature == command_signature(self.command):
                problem = message
            else:
                self._spawn_failure = None
        if problem != self.command_problem:
            if problem:
                logger.error(
                    "Worker %s refuses to run remediations: %s It claims no reports until the "
                    "command is fixed.",
                    self.holder,
                    problem,
                )
            else:
                logger.info("Worker %s: REMEDIATION_COMMAND is usable again.", self.holder)
            self.command_problem = problem
        return problem is None

    def claim_next(self) -> BugReportWorkItem | None:
        """Claim one automatable report for this worker; None when nothing is due."""
        if not self.command or self._stop.is_set() or not self.command_ready():
            return None
        claimed = services.report_claim_for_automation(
            actor=self.holder, lease_seconds=self.lease_seconds
        )
        if claimed is None:
            return None
        report, token = claimed
        with self._tokens_lock:
            self._tokens[report.pk] = token
        return BugReportWorkItem(
            report_id=report.pk, priority=report.severity_rank, retry_count=report.attempts
        )

    def scan_once(self) -> int:
        """Claim as many reports as there are idle runners and queue them; how many."""
        claimed = 0
        while self.queue.free_slots() > 0 and not self._stop.is_set():
            item = self.claim_next()
            if item is None:
                break
            self.queue.enqueue(item)
            claimed += 1
        self.last_scan_at = timezone.now()
        self.last_scan_claimed = claimed
        return claimed

    # Running ----------------------------------------------------------------------------

    def process(self, item: BugReportWorkItem) -> bool:
        """Run the remediation command for one claimed report and record the outcome."""
        token = None
        with self._tokens_lock:
            token = self._tokens.get(item.report_id)
        if token is None:
            return False
        try:
            return self._process(item, token)
        finally:
            self._take_token(item.report_id)
            self._wake.set()

    def _process(self, item: BugReportWorkItem, token: str) -> bool:
        report_id = item.report_id
        try:
            run = services.run_start(
                report_id=report_id, actor=self.holder, claim_token=token, command=self.command
            )
        except LeaseLost:
            logger.warning(
                "Worker %s lost the lease on %s before its run started.", self.holder, report_id
            )
            return False
        try:
            document = report_document(BugReport.objects.get(pk=report_id))
            stdin = json.dumps(document, cls=DjangoJSONEncoder).encode()
        except Exception as exc:
            logger.exception("Could not serialise report %s for its run.", report_id)
            services.report_run_failed(
                report_id=report_id,
                run_id=run.pk,
                actor=self.holder,
                claim_token=token,
                outcome=RunOutcome.CRASHED,
                error=f"Could not prepare the report for the runner: {exc}",
            )
            return False
        env = runner_environment(report_id)
        # No transaction stays open while the command runs: the lease, not a row lock, keeps
        # other workers away, and the heartbeat renews it.
        close_stale_connections()
        result = run_command(
            argv=self.command,
            stdin=stdin,
            env=env,
            timeout=self.timeout,
            tick_seconds=max(1.0, self.lease_seconds / 3),
            on_tick=lambda: self._heartbeat(report_id, token),
            abort=self._abort,
        )
        logger.info(
            "Worker %s: run %d of %s %s in %.1fs (exit %s).",
            self.holder,
            run.attempt,
            report_id,
            result.outcome,
            result.duration,
            result.exit_code,
        )
        try:
            return self._record(report_id, run.pk, token, result)
        except DomainError as exc:
            logger.warning("Worker %s could not record run %s: %s", self.holder, run.pk, exc)
            services.run_finish(
                run_id=run.pk,
                outcome=result.outcome,
                exit_code=result.exit_code,
                output_tail=result.output_tail,
                error=f"{result.error} The result could not be recorded: {exc}".strip(),
            )
            return False

    def _record(self, report_id, run_id: int, token: str, result: RunResult) -> bool:
        if result.spawn_failed:
            # The operator's error, not the report's: no attempt counted, automation left on,
            # and no more claims until the command changes.
            self._spawn_failure = (
                command_signature(self.command),
                f"REMEDIATION_COMMAND: {result.error}",
            )
            self.command_ready()
            services.report_run_abandoned(
                report_id=report_id,
                run_id=run_id,
                actor=self.holder,
                claim_token=token,
                reason=f"{result.error} The command is misconfigured; the report goes back "
                "to the queue and no attempt is counted.",
            )
            return False
        if result.lease_lost:
            services.run_finish(
                run_id=run_id,
                outcome=result.outcome,
                output_tail=result.output_tail,
                error=result.error,
            )
            return False
        if result.aborted:
            services.report_run_abandoned(
                report_id=report_id,
                run_id=run_id,
                actor=self.holder,
                claim_token=token,
                reason=result.error,
            )
            return False
        if result.outcome == RunOutcome.SUCCEEDED:
            try:
                resolution = parse_result_line(result.last_stdout_line)
            except InvalidResult as exc:
                result = RunResult(
                    outcome=RunOutcome.FAILED,
                    exit_code=0,
                    output_tail=result.output_tail,
                    error=f"Exited 0, but the report was not resolved. {exc}",
                )
            else:
                services.report_run_succeeded(
                    report_id=report_id,
                    run_id=run_id,
                    actor=self.holder,
                    claim_token=token,
                    exit_code=0,
                    output_tail=result.output_tail,
                    **resolution,
                )
                return True
        services.report_run_failed(
            report_id=report_id,
            run_id=run_id,
            actor=self.holder,
            claim_token=token,
            outcome=result.outcome,
            exit_code=result.exit_code,
            output_tail=result.output_tail,
            error=result.error,
        )
        return False

    def _heartbeat(self, report_id, token: str) -> bool:
        try:
            report_heartbeat(
                report_id=report_id,
                actor=self.holder,
                claim_token=token,
                lease_seconds=self.lease_seconds,
            )
            return True
        except LeaseLost:
            logger.warning(
                "Worker %s lost the lease on %s mid-run; stopping the run.", self.holder, report_id
            )
            return False
        except Exception:
            # A database hiccup is not a lost lease: keep running, the next beat may succeed.
            logger.exception("Worker %s: heartbeat for %s failed.", self.holder, report_id)
            return True
        finally:
            close_stale_connections()

    # Periodic duties --------------------------------------------------------------------

    def run_duties(self, *, force: bool = False) -> None:
        now = time.monotonic()
        for duty in self._duties:
            if not force and now - duty.last_at < duty.every:
                continue
            duty.last_at = now
            try:
                duty.run()
            except Exception:
                logger.exception("Worker %s: %s failed.", self.holder, duty.name)

    def _sweep_leases(self) -> None:
        swept = leases_sweep()
        if swept:
            logger.info("Lease sweep cleared %d expired claim(s).", swept)

    def _enrich(self) -> None:
        enrich_missing_releases(batch_size=settings.WORKER_ENRICH_BATCH)

    def _check_backlog(self) -> None:
        alerts = list(backlog_alerts() or [])
        self.last_backlog_alerts = alerts
        for alert in alerts:
            message = alert.get("message", alert) if isinstance(alert, dict) else alert
            logger.warning("Backlog alert: %s", message)

    # Status -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "alive": self.alive,
            "started_at": _iso(self.started_at),
            "last_scan_at": _iso(self.last_scan_at),
            "last_scan_claimed": self.last_scan_claimed,
            "poll_seconds": self.poll_seconds,
            "command_configured": bool(self.command),
            "command_problem": self.command_problem,
            "queue": self.queue.metrics().as_dict(),
        }

    def _publish(self) -> None:
        """Tell other processes (through the shared cache) that this worker is alive."""
        ttl = int(max(60, self.poll_seconds * 3))
        try:
            cache.set(f"{CACHE_PREFIX}{self.holder}", self.snapshot(), timeout=ttl)
            registry = cache.get(CACHE_REGISTRY_KEY) or {}
            cutoff = time.time() - 24 * 3600
            registry = {h: seen for h, seen in registry.items() if seen > cutoff}
            registry[self.holder] = time.time()
            cache.set(CACHE_REGISTRY_KEY, registry, timeout=24 * 3600)
        except Exception:
            logger.debug("Could not publish worker status to the cache.", exc_info=True)

    def _unpublish(self) -> None:
        try:
            cache.delete(f"{CACHE_PREFIX}{self.holder}")
        except Exception:
            logger.debug("Could not remove worker status from the cache.", exc_info=True)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def published_workers() -> list[dict[str, Any]]:
    """Workers of every process sharing this cache that reported within their TTL."""
    try:
        registry = cache.get(CACHE_REGISTRY_KEY) or {}
        found = cache.get_many([f"{CACHE_PREFIX}{holder}" for holder in registry])
    except Exception:
        return []
    return sorted(found.values(), key=lambda w: w.get("holder", ""))
