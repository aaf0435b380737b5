"""Services of automated remediation: claiming for the worker and recording its runs.

Each is one transaction and writes its events there. The claim itself goes through the
same claim machinery as agents (`claimable_reports` + `take_claim`), so workers in
several processes and agents never hold one report at the same time.
"""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from reports.attempts import close_attempt, retry_delay, unfixed_changes
from reports.claims import (
    claimable_reports,
    hash_token,
    lease_length,
    require_token,
    resolve_claimed,
    take_claim,
    write_needs_human,
)
from reports.lifecycle import (
    NO_CLAIM,
    db_now,
    lock_report,
    save_changes,
    status_changes,
    write_event,
)
from reports.models import AttemptOutcome, BugReport, EventKind, Status

from .models import AgentRun, RunOutcome

WORKER_HOLDER_PREFIX = "worker:"
AUTOMATION_STATUSES = (Status.NEW, Status.TRIAGED)
CRASHED_RUN_ERROR = "The worker running it stopped before the run finished; its lease expired."
# The worker's backoff is the attempts' rule (reports.attempts.retry_delay), shared with
# agents' env_error releases.


def automatable_reports(*, now: datetime):
    """What the worker may take: reports with automation on, due, unclaimed, and either
    `new`/`triaged` or still `in_progress` under an expired lease of a worker that died."""
    qs = claimable_reports(
        now=now,
        filters={"automation_only": True, "statuses": [*AUTOMATION_STATUSES, Status.IN_PROGRESS]},
    )
    return qs.filter(
        Q(status__in=AUTOMATION_STATUSES)
        | Q(status=Status.IN_PROGRESS, assignee_id__startswith=WORKER_HOLDER_PREFIX)
    )


def report_claim_for_automation(
    *, actor: str, lease_seconds: int | None = None
) -> tuple[BugReport, str] | None:
    """Claim the highest-priority automatable report for a worker, or None.

    Like `report_claim_next`, but it also takes back `in_progress` reports whose worker died
    mid-run (their lease expired): a killed worker loses nothing.
    """
    lease = lease_length(lease_seconds)
    with transaction.atomic():
        now = db_now()
        report = (
            automatable_reports(now=now).select_for_update(skip_locked=True, of=("self",)).first()
        )
        if report is None:
            return None
        return take_claim(report, actor=actor, lease=lease, now=now)


def run_start(*, report_id, actor: str, claim_token: str, command: list[str]) -> AgentRun:
    """Record that a remediation run begins; runs left unfinished by a dead worker become
    `crashed`. The caller must hold the report's live claim."""
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        require_token(report, claim_token, now)
        for orphan in AgentRun.objects.select_for_update().filter(
            report=report, finished_at__isnull=True
        ):
            _finish(orphan, outcome=RunOutcome.CRASHED, error=CRASHED_RUN_ERROR, now=now)
            write_event(
                report=report,
                kind=EventKind.RUN_FAILED,
                actor="system",
                message=f"Remediation run {orphan.attempt} by {orphan.runner} crashed: {CRASHED_RUN_ERROR}",
                data={
                    "run_id": orphan.pk,
                    "attempt": orphan.attempt,
                    "outcome": RunOutcome.CRASHED,
                },
            )
        run = AgentRun.objects.create(
            report=report,
            attempt=report.attempts + 1,
            runner=actor,
            command=list(command),
            started_at=now,
        )
        save_changes(report, {})
        write_event(
            report=report,
            kind=EventKind.AGENT_ACTION,
            actor=actor,
            message=f"Remediation run {run.attempt} started.",
            data={"run_id": run.pk, "attempt": run.attempt, "command": run.command},
        )
        return run


def run_finish(
    *,
    run_id: int,
    outcome: str,
    exit_code: int | None = None,
    output_tail: str = "",
    error: str = "",
) -> AgentRun:
    """Close one AgentRun row (outcome, exit code, output tail, error); the report is untouched."""
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().get(pk=run_id)
        return _finish(
            run,
            outcome=outcome,
            exit_code=exit_code,
            output_tail=output_tail,
            error=error,
            now=db_now(),
        )


def _finish(
    run: AgentRun, *, outcome: str, now: datetime, exit_code=None, output_tail="", error=""
) -> AgentRun:
    run.outcome = RunOutcome(outcome)
    run.exit_code = exit_code
    run.output_tail = output_tail
    run.error = error
    run.finished_at = max(now, run.started_at)
    run.save(update_fields=["outcome", "exit_code", "output_tail", "error", "finished_at"])
    return run


def _holds_claim(report: BugReport, claim_token: str) -> bool:
    """Whether the claim is still ours: the token matches, even if the lease just ran out
    (nobody else has taken it; a new claim or the sweep would have replaced the hash)."""
    return bool(report.claim_token_hash) and report.claim_token_hash == hash_token(claim_token)


def report_run_succeeded(
    *,
    report_id,
    run_id: int,
    actor: str,
    claim_token: str,
    exit_code: int = 0,
    output_tail: str = "",
    resolution_notes: str = "",
    commit_shas: list[str] | None = None,
    verify: bool = False,
    resolved_in_release: str | None = None,
) -> BugReport:
    """The runner exited 0: close the run and resolve the report (or hand it over for
    verification) with what the runner said (validated as a resolve body), clearing the claim."""
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        run = AgentRun.objects.select_for_update().get(pk=run_id, report=report)
        ours = _holds_claim(report, claim_token)
        _finish(
            run,
            outcome=RunOutcome.SUCCEEDED,
            exit_code=exit_code,
            output_tail=output_tail,
            error=""
            if ours
            else "The lease was lost before the result was recorded; report unchanged.",
            now=now,
        )
        if not ours:
            return report
        notes = resolution_notes or f"Resolved by automated remediation (run {run.attempt})."
        return resolve_claimed(
            report,
            actor=actor,
            notes=notes,
            message=notes,
            commit_shas=commit_shas,
            verify=verify,
            changes={
                "next_attempt_at": None,
                **({"resolved_in_release": resolved_in_release} if resolved_in_release else {}),
            },
            data={"run_id": run.pk},
            now=now,
            exit_code=exit_code,
            output_tail=output_tail,
        )


def report_run_failed(
    *,
    report_id,
    run_id: int,
    actor: str,
    claim_token: str,
    outcome: str = RunOutcome.FAILED,
    exit_code: int | None = None,
    output_tail: str = "",
    error: str = "",
    max_attempts: int | None = None,
) -> BugReport:
    """The runner failed (non-zero exit, timeout, could not start): record the error as an
    event, release the report, count the attempt and set its cooldown; after `MAX_ATTEMPTS`
    turn automation off with a note for humans."""
    max_attempts = settings.MAX_ATTEMPTS if max_attempts is None else max_attempts
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        run = AgentRun.objects.select_for_update().get(pk=run_id, report=report)
        ours = _holds_claim(report, claim_token)
        _finish(
            run,
            outcome=outcome,
            exit_code=exit_code,
            output_tail=output_tail,
            error=error
            if ours
            else f"{error} (The lease was lost meanwhile; the report was not changed.)",
            now=now,
        )
        write_event(
            report=report,
            kind=EventKind.RUN_FAILED,
            actor=actor,
            message=f"Remediation run {run.attempt} {_outcome_words(outcome)}: {error}".strip(),
            data={
                "run_id": run.pk,
                "attempt": run.attempt,
                "outcome": outcome,
                "exit_code": exit_code,
            },
        )
        if not ours:
            return report
        close_attempt(
            report,
            outcome=outcome,
            now=now,
            note=error,
            exit_code=exit_code,
            output_tail=output_tail,
        )
        attempts = report.attempts + 1
        give_up = attempts >= max_attempts
        changes = _give_back(report)
        changes.update(unfixed_changes(report, outcome=outcome))
        changes.update(
            attempts=attempts,
            next_attempt_at=None if give_up else now + retry_delay(attempt=attempts),
        )
        if give_up:
            changes.update(automation_enabled=False, needs_human=True)
        asks_human = changes.get("needs_human") and not report.needs_human
        save_changes(report, changes)
        retry = (
            "automation is now off"
            if give_up
            else f"next attempt after {report.next_attempt_at.isoformat()}"
        )
        write_event(
            report=report,
            kind=EventKind.RELEASED,
            actor=actor,
            message=f"Released after failed remediation run {run.attempt}; {retry}.",
            data={
                "holder": actor,
                "attempts": attempts,
                "next_attempt_at": _iso(report.next_attempt_at),
            },
        )
        if give_up:
            write_event(
                report=report,
                kind=EventKind.AUTOMATION_DISABLED,
                actor=actor,
                message=(
                    f"Automated remediation failed {attempts} times (last: {_outcome_words(outcome)}); "
                    "automation is off for this report and it needs a human. The runs and their "
                    "output are under /runs; set automation_enabled again to retry."
                ),
                data={"attempts": attempts, "max_attempts": max_attempts, "last_run_id": run.pk},
            )
        if asks_human:
            write_needs_human(
                report, actor=actor, why=f"automated remediation failed {attempts} times"
            )
        return report


def report_run_abandoned(
    *, report_id, run_id: int | None, actor: str, claim_token: str, reason: str
) -> BugReport:
    """The worker is stopping (or could not start the run): close the run as `crashed` and give
    the report back without counting an attempt, so the next worker takes it at once."""
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if run_id is not None:
            run = AgentRun.objects.select_for_update().get(pk=run_id, report=report)
            _finish(run, outcome=RunOutcome.CRASHED, error=reason, now=now)
        if not _holds_claim(report, claim_token):
            return report
        close_attempt(report, outcome=AttemptOutcome.CRASHED, note=reason, now=now)
        save_changes(report, _give_back(report))
        write_event(
            report=report,
            kind=EventKind.RELEASED,
            actor=actor,
            message=reason,
            data={"holder": actor, "run_id": run_id},
        )
        return report


def _give_back(report: BugReport) -> dict[str, Any]:
    """Clear the claim; a report the worker had moved to `in_progress` goes back to `triaged`
    (as a release does); any other status someone set meanwhile stays."""
    changes: dict[str, Any] = {**NO_CLAIM, "assignee_id": None}
    if report.status == Status.IN_PROGRESS:
        changes.update(status_changes(report, Status.TRIAGED))
    return changes


def _outcome_words(outcome: str) -> str:
    return {
        RunOutcome.FAILED: "failed",
        RunOutcome.TIMED_OUT: "timed out",
        RunOutcome.CRASHED: "crashed",
    }.get(outcome, str(outcome))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
