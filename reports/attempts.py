"""Attempts: every claim opens one (`ClaimAttempt`), and it is closed exactly once.

The rules of how an attempt ends live here: which endings count as "without a fix"
(`ends_without_fix`), what that does to the report (`unfixed_changes`: `attempts` +1,
`needs_human` once `MAX_ATTEMPTS` is reached, or at once for a release reason that needs a
human), and the growing cooldown shared with the worker (`retry_delay`).
"""

import random
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from .models import AttemptOutcome, AttemptPurpose, BugReport, ClaimAttempt, ReleaseReason

# The random share added to each cooldown, so reports that failed together retry apart.
RETRY_JITTER = 0.1
# 2 ** 20 cooldowns is already far beyond any sensible retry horizon.
MAX_BACKOFF_EXPONENT = 20

# Releases that mean an agent cannot go further without a person.
NEEDS_HUMAN_REASONS = (ReleaseReason.NEEDS_INFO, ReleaseReason.NOT_A_BUG)
# Endings that count towards MAX_ATTEMPTS (a release counts unless its reason is env_error).
UNFIXED_OUTCOMES = (AttemptOutcome.EXPIRED, AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT)


def retry_delay(
    *, attempt: int, cooldown: float | None = None, jitter: float = RETRY_JITTER
) -> timedelta:
    """RETRY_COOLDOWN * 2^(attempt-1), plus up to `jitter` of it at random (never less)."""
    base = settings.RETRY_COOLDOWN if cooldown is None else cooldown
    seconds = base * 2 ** min(max(attempt, 1) - 1, MAX_BACKOFF_EXPONENT)
    return timedelta(seconds=seconds * (1 + random.uniform(0, jitter)))


def ends_without_fix(outcome: str, reason: str = "") -> bool:
    if outcome == AttemptOutcome.RELEASED:
        return reason != ReleaseReason.ENV_ERROR
    return outcome in UNFIXED_OUTCOMES


def unfixed_changes(report: BugReport, *, outcome: str, reason: str = "") -> dict[str, Any]:
    """What an attempt ending this way does to the report's counters."""
    changes: dict[str, Any] = {}
    if ends_without_fix(outcome, reason):
        changes["attempts"] = report.attempts + 1
        if changes["attempts"] >= settings.MAX_ATTEMPTS:
            changes["needs_human"] = True
    if reason in NEEDS_HUMAN_REASONS:
        changes["needs_human"] = True
    return changes


def unfixed_changes_sql(*, lapsed: str, attempts: str, needs_human: str) -> dict[str, str]:
    """`unfixed_changes` for an expired lease, as SQL over a row (`lapsed` a boolean
    expression): the claim statement's form of the same rule. `%(max_attempts)s` is its
    parameter (`unfixed_params`)."""
    return {
        "attempts": f"{attempts} + CASE WHEN {lapsed} THEN 1 ELSE 0 END",
        "needs_human": (f"({needs_human} OR ({lapsed} AND {attempts} + 1 >= %(max_attempts)s))"),
    }


def unfixed_params() -> dict[str, Any]:
    return {"max_attempts": settings.MAX_ATTEMPTS}


def attempt_columns(*, holder, epoch, token_hash, started_at, purpose) -> dict[str, Any]:
    """The columns of an attempt as a claim opens it: values for the ORM, SQL for the
    statement."""
    return {
        "holder": holder,
        "claim_epoch": epoch,
        "token_hash": token_hash,
        "started_at": started_at,
        "purpose": purpose,
        "outcome": AttemptOutcome.RUNNING.value,
    }


def open_attempt(
    report: BugReport, *, holder: str, token_hash: str, now: datetime, purpose: str
) -> ClaimAttempt:
    columns = attempt_columns(
        holder=holder,
        epoch=report.claim_epoch,
        token_hash=token_hash,
        started_at=now,
        purpose=purpose,
    )
    return ClaimAttempt.objects.create(report=report, **columns)


def close_attempt(
    report: BugReport,
    *,
    outcome: str,
    now: datetime,
    reason: str = "",
    note: str = "",
    exit_code: int | None = None,
    output_tail: str = "",
) -> ClaimAttempt | None:
    """Close the report's running attempt (there is at most one), once: None when there is
    none (already closed, or a claim from before attempts were kept)."""
    attempt = running_attempt(report)
    if attempt is None:
        return None
    attempt.ended_at = max(now, attempt.started_at)
    attempt.outcome = outcome
    attempt.reason = reason or ""
    attempt.note = note or ""
    attempt.exit_code = exit_code
    attempt.output_tail = output_tail or ""
    # The `ended_at IS NULL` guard makes a second close a no-op, never a second ending.
    closed = ClaimAttempt.objects.filter(pk=attempt.pk, ended_at__isnull=True).update(
        ended_at=attempt.ended_at,
        outcome=outcome,
        reason=attempt.reason,
        note=attempt.note,
        exit_code=exit_code,
        output_tail=attempt.output_tail,
    )
    return attempt if closed else None


def running_attempt(report: BugReport) -> ClaimAttempt | None:
    return ClaimAttempt.objects.filter(report=report, ended_at__isnull=True).first()


def token_was_ours(report: BugReport, token_hash: str) -> bool:
    """Whether the token belonged to an earlier claim of this report (so its lease was lost)."""
    return ClaimAttempt.objects.filter(report=report, token_hash=token_hash).exists()


def env_error_delay(report: BugReport) -> timedelta:
    """The cooldown after an `env_error` release: the worker's rule, counting this report's
    `env_error` releases (the one just closed included)."""
    count = ClaimAttempt.objects.filter(
        report=report, outcome=AttemptOutcome.RELEASED, reason=ReleaseReason.ENV_ERROR
    ).count()
    return retry_delay(attempt=count)


def fixing_attempt(report: BugReport) -> ClaimAttempt | None:
    """The attempt that last claimed a fix (resolved it), for verification to mark."""
    return (
        ClaimAttempt.objects.filter(
            report=report, outcome=AttemptOutcome.RESOLVED, purpose=AttemptPurpose.FIX
        )
        .order_by("-started_at", "-id")
        .first()
    )
