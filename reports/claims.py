"""Claims: claim, claim-next, heartbeat, release, resolve, and the lease sweep.

A claim is described once (`claim_columns`, `CLAIMED`, `LEASE_EXPIRED`). Two forms are
built from that description: the ORM's (`take_claim`: claim by id, the worker, SQLite) and,
for claim-next on PostgreSQL, one statement that picks with SKIP LOCKED, claims and writes
both events (`_claim_next_postgresql`). `tests/reports/test_api_claims.py` holds their rows
and events equal.
"""

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from bugtracker.domain import InvalidInput
from bugtracker.rows import columns, from_row, select_list
from bugtracker.sql import isoformat_sql

from . import event_hooks
from .attempts import (
    NEEDS_HUMAN_REASONS,
    attempt_columns,
    close_attempt,
    env_error_delay,
    fixing_attempt,
    open_attempt,
    running_attempt,
    token_was_ours,
    unfixed_changes,
    unfixed_changes_sql,
    unfixed_params,
)
from .errors import (
    ClaimConflict,
    ClaimTokenMismatch,
    ClaimTokenRequired,
    LeaseLost,
    NotClaimable,
    OwnFixNotVerifiable,
    TransitionNotAllowed,
)
from .lifecycle import (
    NO_CLAIM,
    EventText,
    db_now,
    lock_report,
    resolve_duplicates,
    save_changes,
    status_changes,
    write_event,
)
from .models import (
    SEVERITY_RANK,
    AttemptOutcome,
    AttemptPurpose,
    BugReport,
    ClaimAttempt,
    EventKind,
    ReleaseReason,
    Severity,
    Status,
    Verification,
)
from .selectors import report_with_counts
from .signals import announce_change

DEFAULT_LEASE_SECONDS = 900
MAX_LEASE_SECONDS = 86400
CLAIMABLE_STATUSES = (Status.NEW, Status.TRIAGED, Status.IN_PROGRESS)
REPORT_COLUMNS = columns(BugReport)
# Claim-next filters matching any of their values (one, or a comma list), in both forms.
ANY_OF_FILTERS = ("category", "component")

# The claim, described once --------------------------------------------------------------

LEASE_EXPIRED = EventText(
    EventKind.LEASE_EXPIRED, "Lease of {holder} expired at {expired_at}.", ("holder", "expired_at")
)
CLAIMED = EventText(
    EventKind.CLAIMED,
    "Claimed until {expires_at}.",
    ("from_status", "lease_seconds", "claim_epoch"),
)
CLAIM_RENEWED = EventText(
    EventKind.CLAIM_RENEWED,
    "Claim renewed by its holder until {expires_at}; the earlier token no longer works.",
    ("from_status", "lease_seconds", "claim_epoch"),
)
LEASE_EXPIRED_ACTOR = "system"
# A released report is out of its releaser's claim-next for RECLAIM_COOLDOWN seconds.
RELEASED_OUTCOME = AttemptOutcome.RELEASED


def claim_columns(*, holder, token_hash, expires_at, epoch) -> dict[str, Any]:
    """The columns a claim sets besides its status move (to `in_progress`): values for the
    ORM form, SQL expressions for the statement."""
    return {
        "claim_holder": holder,
        "claim_token_hash": token_hash,
        "claim_expires_at": expires_at,
        "claim_epoch": epoch,
        "assignee_id": holder,
    }


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def lease_length(lease_seconds: int | None) -> timedelta:
    """The lease asked for (DEFAULT_LEASE_SECONDS when none); InvalidInput outside its bounds."""
    seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else int(lease_seconds)
    if not 1 <= seconds <= MAX_LEASE_SECONDS:
        raise InvalidInput(
            "lease_seconds", f"lease_seconds must be between 1 and {MAX_LEASE_SECONDS}."
        )
    return timedelta(seconds=seconds)


# The ORM form -----------------------------------------------------------------------------


def end_lapsed_claim(report: BugReport, now: datetime) -> dict[str, Any]:
    """A claim whose lease ran out, noticed now: its `lease_expired` event, its attempt closed
    as `expired`, and the counters that implies (returned, for the caller's write)."""
    if not (report.claim_holder and report.claim_expires_at and report.claim_expires_at <= now):
        return {}
    values = {
        "holder": report.claim_holder,
        "expired_at": report.claim_expires_at.isoformat(),
    }
    write_event(
        report=report,
        kind=LEASE_EXPIRED.kind,
        actor=LEASE_EXPIRED_ACTOR,
        message=LEASE_EXPIRED.message(**values),
        data=LEASE_EXPIRED.data(**values),
    )
    close_attempt(report, outcome=AttemptOutcome.EXPIRED, now=now)
    return unfixed_changes(report, outcome=AttemptOutcome.EXPIRED)


def take_claim(
    report: BugReport,
    *,
    actor: str,
    lease: timedelta,
    now: datetime,
    purpose: str = AttemptPurpose.FIX,
) -> tuple[BugReport, str]:
    """Claim a locked, claimable report for `actor`: its columns, status, attempt and events.

    The live holder claiming again renews: a new token, a fresh lease, its running attempt
    closed as `taken_over` and a new one opened, event `claim_renewed`. A `verify` claim
    leaves an `awaiting_verification` report where it is."""
    renewal = report.claim_is_live(now) and report.claim_holder == actor
    changes = end_lapsed_claim(report, now)
    if renewal:
        current = running_attempt(report)
        purpose = current.purpose if current is not None else purpose
        close_attempt(
            report, outcome=AttemptOutcome.TAKEN_OVER, now=now, note="Renewed by its holder."
        )
    token = secrets.token_urlsafe(32)
    token_hash = hash_token(token)
    changes.update(
        claim_columns(
            holder=actor,
            token_hash=token_hash,
            expires_at=now + lease,
            epoch=report.claim_epoch + 1,
        )
    )
    before = report.status
    if purpose == AttemptPurpose.FIX and before != Status.IN_PROGRESS:
        changes.update(status_changes(report, Status.IN_PROGRESS))
    save_changes(report, changes)
    open_attempt(report, holder=actor, token_hash=token_hash, now=now, purpose=purpose)
    text = CLAIM_RENEWED if renewal else CLAIMED
    values = {
        "expires_at": report.claim_expires_at.isoformat(),
        "from_status": before,
        "lease_seconds": int(lease.total_seconds()),
        "claim_epoch": report.claim_epoch,
    }
    write_event(
        report=report,
        kind=text.kind,
        actor=actor,
        message=text.message(**values),
        data=text.data(**values),
    )
    return report, token


def report_claim(
    *, report_id, actor: str, lease_seconds: int | None = None
) -> tuple[BugReport, str]:
    """Claim one report for `actor`; returns the report and the token (shown only here).
    The live holder claiming again renews its claim (`take_claim`)."""
    lease = lease_length(lease_seconds)
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if (
            report.status not in CLAIMABLE_STATUSES
            and report.status != Status.AWAITING_VERIFICATION
        ):
            raise NotClaimable(f"A {report.status} report cannot be claimed.")
        if report.duplicate_of_id is not None:
            raise NotClaimable(
                f"This report is a duplicate of {report.duplicate_of_id}; claim the canonical report.",
                canonical=str(report.duplicate_of_id),
            )
        if report.claim_is_live(now) and report.claim_holder != actor:
            raise ClaimConflict(
                f"Report is claimed by {report.claim_holder} until {report.claim_expires_at.isoformat()}.",
                holder=report.claim_holder,
            )
        return take_claim(report, actor=actor, lease=lease, now=now)


def released_lately(*, actor: str, now: datetime):
    """`actor`'s releases of the outer report within RECLAIM_COOLDOWN (an Exists subquery)."""
    return ClaimAttempt.objects.filter(
        report=OuterRef("pk"),
        holder=actor,
        outcome=RELEASED_OUTCOME,
        ended_at__gt=now - timedelta(seconds=settings.RECLAIM_COOLDOWN),
    )


def claimable_reports(
    *, now: datetime, filters: dict[str, Any] | None = None, actor: str | None = None
):
    """Open, canonical, unclaimed (or lease-expired) reports in priority order: not waiting
    for a human, not cooling down, not released by `actor` within RECLAIM_COOLDOWN. The
    claim statement's WHERE (`_claim_next_postgresql`) says the same in SQL."""
    filters = filters or {}
    qs = BugReport.objects.filter(
        Q(claim_holder__isnull=True) | Q(claim_expires_at__lte=now),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        status__in=filters.get("statuses") or CLAIMABLE_STATUSES,
        duplicate_of__isnull=True,
        needs_human=False,
    )
    if actor is not None:
        qs = qs.filter(~Exists(released_lately(actor=actor, now=now)))
    if filters.get("purpose") == AttemptPurpose.VERIFY and actor is not None:
        qs = qs.exclude(resolved_by=actor)
    if filters.get("severity"):
        qs = qs.filter(severity__in=filters["severity"])
    if filters.get("min_severity"):
        qs = qs.filter(severity_rank__lte=severity_rank(filters["min_severity"]))
    for field in ANY_OF_FILTERS:
        if filters.get(field):
            qs = qs.filter(**{f"{field}__in": _as_list(filters[field])})
    if filters.get("automation_only"):
        qs = qs.filter(automation_enabled=True)
    return qs.order_by("severity_rank", "sla_due_at", "created_at", "id")


def _as_list(value: str | list[str]) -> list[str]:
    """A claim filter's values: one, or any of a list (claim-next takes comma lists)."""
    return [value] if isinstance(value, str) else list(value)


def severity_rank(severity: str) -> int:
    return SEVERITY_RANK[Severity(severity)]


def report_claim_next(
    *, actor: str, lease_seconds: int | None = None, filters: dict[str, Any] | None = None
) -> tuple[BugReport, str] | None:
    """Claim the highest-priority claimable report, or None when there is none.

    On PostgreSQL, SKIP LOCKED hands concurrent callers different rows; on SQLite the
    transaction takes the write lock at BEGIN (IMMEDIATE), which serialises claimers.
    """
    lease = lease_length(lease_seconds)
    filters = dict(filters or {})
    purpose = filters.get("purpose") or AttemptPurpose.FIX
    if purpose == AttemptPurpose.VERIFY:
        filters["statuses"] = [Status.AWAITING_VERIFICATION]
    statuses = filters.get("statuses") or CLAIMABLE_STATUSES
    if connection.vendor == "postgresql" and set(statuses) <= set(CLAIMABLE_STATUSES):
        # One statement (claim, attempt, events, counts): atomic by itself, no BEGIN/COMMIT.
        return _claim_next_postgresql(actor=actor, lease=lease, filters=filters)
    # savepoint=False: inside a caller's transaction a savepoint is two more round trips per
    # claim, and any error here fails the whole request anyway.
    with transaction.atomic(savepoint=False):
        now = db_now()
        report = (
            claimable_reports(now=now, filters=filters, actor=actor)
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if report is None:
            return None
        report, token = take_claim(report, actor=actor, lease=lease, now=now, purpose=purpose)
        # Read in the claim's transaction: a token is never lost to a failed read.
        return report_with_counts(report), token


# The PostgreSQL form ----------------------------------------------------------------------


@cache
def _claim_next_statement() -> str:
    """claimable_reports() + take_claim() + their attempt and events as one statement, from
    the claim's description: pick the first claimable row with SKIP LOCKED, take it, close
    the attempt of a lapsed lease (`expired`, counted by the attempts' rule) and open the
    claim's attempt, and write the `lease_expired` (when a lapsed lease is taken over) and
    `claimed` events, in one round trip and without a transaction block around it. The ORM
    form compiled several queries per claim plus BEGIN and COMMIT; this is what
    benchmarks/claims.py measures against bare SQL. `{where}` is left for the filters, `{listeners}` for what event
    listeners (the webhook outbox) write with the `claimed` event (`_claim_listener_parts`)."""
    fields = {f.attname: f.column for f in BugReport._meta.concrete_fields}
    lapsed = (
        "(picked.claim_holder IS NOT NULL AND picked.claim_expires_at <= statement_timestamp())"
    )
    claim = claim_columns(
        holder="%(actor)s",
        token_hash="%(token_hash)s",
        expires_at="statement_timestamp() + %(lease)s",
        epoch="r.claim_epoch + 1",
    )
    unfixed = unfixed_changes_sql(lapsed=lapsed, attempts="r.attempts", needs_human="r.needs_human")
    sets = {**claim, **unfixed, "status": "%(in_progress)s", "updated_at": "%(now)s"}
    set_list = ", ".join(f"{fields[name]} = {value}" for name, value in sets.items())
    attempt = attempt_columns(
        holder="%(actor)s",
        epoch="claim_epoch",
        token_hash="%(token_hash)s",
        started_at="%(now)s",
        purpose="%(purpose)s",
    )
    attempt["outcome"] = "%(running)s"
    attempt_fields = {f.attname: f.column for f in ClaimAttempt._meta.concrete_fields}
    attempt_list = ", ".join(attempt_fields[name] for name in attempt)
    attempt_values = ", ".join(attempt.values())
    expired = {"holder": "previous_holder", "expired_at": isoformat_sql("previous_expiry")}
    claimed = {
        "expires_at": isoformat_sql("claim_expires_at"),
        "from_status": "previous_status",
        "lease_seconds": "%(seconds)s",
        "claim_epoch": "claim_epoch",
    }
    return f"""
WITH picked AS (
    SELECT id, status, claim_holder, claim_expires_at FROM bug_reports
     WHERE {{where}}
     ORDER BY severity_rank, sla_due_at, created_at, id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE bug_reports AS r
       SET {set_list}, version = r.version + 1
      FROM picked
     WHERE r.id = picked.id
 RETURNING {select_list(BugReport, REPORT_COLUMNS, "r")}, picked.status AS previous_status,
           picked.claim_holder AS previous_holder, picked.claim_expires_at AS previous_expiry
), closed AS (
    -- a scalar subquery, not a join: the index finds the one running attempt of this
    -- report (a join walked every running attempt, and claims in flight pile up)
    UPDATE claim_attempts AS a
       SET ended_at = GREATEST(%(now)s, a.started_at), outcome = %(expired)s
     WHERE a.report_id = (SELECT id FROM claimed) AND a.ended_at IS NULL
 RETURNING a.id
), opened AS (
    -- after `closed` (its count is read first): one running attempt per report at a time
    INSERT INTO claim_attempts (report_id, {attempt_list}, reason, note, output_tail)
    SELECT id, {attempt_values}, '', '', ''
      FROM claimed, (SELECT COUNT(*) FROM closed) AS done
), events AS (
    INSERT INTO bug_report_events (report_id, kind, actor, message, data, created_at)
    SELECT id, kind, actor, message, data, %(now)s FROM (
        SELECT 1 AS step, id, %(lease_expired)s AS kind, %(system)s AS actor,
               {LEASE_EXPIRED.message_sql(**expired)} AS message,
               {LEASE_EXPIRED.data_sql(**expired)} AS data
          FROM claimed
         WHERE previous_holder IS NOT NULL AND previous_expiry <= statement_timestamp()
        UNION ALL
        SELECT 2, id, %(claimed)s, %(actor)s, {CLAIMED.message_sql(**claimed)},
               {CLAIMED.data_sql(**claimed)}
          FROM claimed
    ) AS written
     ORDER BY step
){{listeners}}
SELECT claimed.*,
       -- what the API shows beside the row (selectors.report_with_counts), in the same trip
       COALESCE((SELECT g.occurrences FROM bug_report_dedup g
                  WHERE g.id = claimed.dedup_group_id), 1) AS group_occurrences,
       (SELECT COUNT(*) FROM bug_reports d WHERE d.duplicate_of_id = claimed.id)
           AS duplicates_total
  FROM claimed
"""


def _claim_next_postgresql(
    *, actor: str, lease: timedelta, filters: dict[str, Any]
) -> tuple[BugReport, str] | None:
    statuses = [Status(s).value for s in filters.get("statuses") or CLAIMABLE_STATUSES]
    # Statuses are inlined (validated enum values) so the planner can use the partial
    # queue index; every other value is a parameter. The conditions are claimable_reports'.
    where = [
        "status IN ({})".format(", ".join(f"'{s}'" for s in statuses)),
        "duplicate_of_id IS NULL",
        "(claim_holder IS NULL OR claim_expires_at <= statement_timestamp())",
        "(next_attempt_at IS NULL OR next_attempt_at <= statement_timestamp())",
        "NOT needs_human",
        "NOT EXISTS (SELECT 1 FROM claim_attempts AS mine WHERE mine.report_id = bug_reports.id"
        " AND mine.holder = %(actor)s AND mine.outcome = %(released)s"
        " AND mine.ended_at > statement_timestamp() - %(reclaim)s)",
    ]
    token = secrets.token_urlsafe(32)
    params: dict[str, Any] = {
        "actor": actor,
        "token_hash": hash_token(token),
        "lease": lease,
        "seconds": int(lease.total_seconds()),
        "now": timezone.now(),
        "in_progress": Status.IN_PROGRESS.value,
        "lease_expired": LEASE_EXPIRED.kind.value,
        "claimed": CLAIMED.kind.value,
        "system": LEASE_EXPIRED_ACTOR,
        "purpose": AttemptPurpose.FIX.value,
        "running": AttemptOutcome.RUNNING.value,
        "expired": AttemptOutcome.EXPIRED.value,
        "released": RELEASED_OUTCOME.value,
        "reclaim": timedelta(seconds=settings.RECLAIM_COOLDOWN),
        **unfixed_params(),
    }
    if filters.get("severity"):
        where.append("severity = ANY(%(severity)s)")
        params["severity"] = [Severity(s).value for s in filters["severity"]]
    if filters.get("min_severity"):
        where.append("severity_rank <= %(min_rank)s")
        params["min_rank"] = severity_rank(filters["min_severity"])
    for field in ANY_OF_FILTERS:
        if filters.get(field):
            where.append(f"{field} = ANY(%({field})s)")
            params[field] = _as_list(filters[field])
    if filters.get("automation_only"):
        where.append("automation_enabled")
    sql = _claim_next_statement().replace("{where}", " AND ".join(where))
    sql = sql.replace("{listeners}", _claim_listener_parts(params))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    report = from_row(BugReport, REPORT_COLUMNS, row)
    report.group_occurrences, report.duplicates_total = row[-2], row[-1]
    announce_change(report.pk)
    return report, token


def _claim_listener_parts(params: dict[str, Any]) -> str:
    """What event listeners (the webhook outbox) write with the `claimed` event, as more
    parts of the claim statement reading the report from `claimed`; their parameters join
    `params` by name."""
    statements = event_hooks.statements_reading(
        kind=CLAIMED.kind,
        source="claimed",
        report_id_sql="claimed.id",
        created_at_sql="%(now)s",
    )
    parts = []
    for n, (sql, values) in enumerate(statements):
        pieces = sql.split("%s")
        if len(pieces) != len(values) + 1:
            raise ValueError("A listener's statement and its parameters do not match.")
        named = pieces[0]
        for i, (value, piece) in enumerate(zip(values, pieces[1:], strict=True)):
            params[f"listener{n}_{i}"] = value
            named += f"%(listener{n}_{i})s" + piece
        parts.append(f", listener{n} AS ({named})")
    return "".join(parts)


# Holding, giving back, finishing ----------------------------------------------------------


def require_token(report: BugReport, claim_token: str | None, now: datetime) -> None:
    """Passes when `claim_token` is the token of the report's live claim. Otherwise says what
    happened: no token on a live claim is ClaimTokenRequired (428); a token that was never this
    claim's while the lease is live, ClaimTokenMismatch (409); a lease that expired or was
    taken over (the token was an earlier claim's, or nothing is held), LeaseLost (409)."""
    live = report.claim_is_live(now)
    if not claim_token:
        if live:
            raise ClaimTokenRequired(
                f"Report is claimed by {report.claim_holder} until "
                f"{report.claim_expires_at.isoformat()}; send its X-Claim-Token.",
                holder=report.claim_holder,
            )
        raise LeaseLost(
            "This report holds no live claim: the lease expired or was never taken; claim it again."
        )
    token_hash = hash_token(claim_token)
    if live and secrets.compare_digest(token_hash, report.claim_token_hash or ""):
        return
    if live and not token_was_ours(report, token_hash):
        raise ClaimTokenMismatch(
            "The X-Claim-Token is not the token of the live claim on this report.",
            holder=report.claim_holder,
        )
    if live:
        raise LeaseLost(
            "That token's claim was taken over (renewed or claimed again); the lease was lost.",
            holder=report.claim_holder,
        )
    raise LeaseLost("The lease of that token expired; claim the report again.")


def check_claim(report: BugReport, *, claim_token: str | None, is_admin: bool) -> None:
    """A live claim blocks other writers unless its token or an admin comes along; a token
    sent for a claim that is gone is refused too (the sender believes it holds the report)."""
    if is_admin:
        return
    now = timezone.now()
    if not claim_token and not report.claim_is_live(now):
        return
    require_token(report, claim_token, now)


def report_heartbeat(
    *, report_id, actor: str, claim_token: str | None, lease_seconds: int | None = None
) -> BugReport:
    """Extend the live claim's lease. Not a change of the report: `version` (the ETag) stays,
    so a background heartbeat never makes the holder's own If-Match write fail."""
    lease = lease_length(lease_seconds)
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        require_token(report, claim_token, now)
        report.claim_expires_at = now + lease
        BugReport.objects.filter(pk=report.pk).update(claim_expires_at=report.claim_expires_at)
        return report


def report_release(
    *,
    report_id,
    actor: str,
    claim_token: str | None,
    reason: str = ReleaseReason.OTHER,
    note: str = "",
    is_admin: bool = False,
) -> BugReport:
    """Give a claimed report back with a reason: claim and assignee cleared, status `triaged`
    (a verifier's release leaves it `awaiting_verification`), the attempt closed as
    `released`; `needs_info`/`not_a_bug` and MAX_ATTEMPTS unfixed attempts set `needs_human`,
    `env_error` a growing cooldown."""
    reason = ReleaseReason(reason or ReleaseReason.OTHER)
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if not is_admin:
            require_token(report, claim_token, now)
        holder = report.claim_holder
        attempt = close_attempt(
            report, outcome=AttemptOutcome.RELEASED, reason=reason, note=note, now=now
        )
        changes: dict[str, Any] = {**NO_CLAIM, "assignee_id": None}
        if report.status == Status.IN_PROGRESS:
            changes.update(status_changes(report, Status.TRIAGED))
        if attempt is not None and attempt.purpose == AttemptPurpose.FIX:
            changes.update(unfixed_changes(report, outcome=AttemptOutcome.RELEASED, reason=reason))
        elif reason in NEEDS_HUMAN_REASONS:
            changes["needs_human"] = True
        if reason == ReleaseReason.ENV_ERROR:
            changes["next_attempt_at"] = now + env_error_delay(report)
        asks_human = changes.get("needs_human") and not report.needs_human
        save_changes(report, changes)
        write_event(
            report=report,
            kind=EventKind.RELEASED,
            actor=actor,
            message=note,
            data={
                "holder": holder,
                "reason": reason.value,
                "claim_epoch": report.claim_epoch,
                "next_attempt_at": _iso(report.next_attempt_at),
            },
        )
        if asks_human:
            write_needs_human(report, actor=actor, why=f"released with reason {reason.value}")
        return report


def write_needs_human(report: BugReport, *, actor: str, why: str) -> None:
    write_event(
        report=report,
        kind=EventKind.NEEDS_HUMAN,
        actor=actor,
        message=(
            f"Needs a human ({why}); out of claim-next until an admin clears needs_human "
            f"with PATCH. Attempts without a fix: {report.attempts}."
        ),
        data={"attempts": report.attempts, "why": why},
    )


def report_resolve(
    *,
    report_id,
    actor: str,
    claim_token: str | None,
    resolution_notes: str = "",
    commit_shas: list[str] | None = None,
    verify: bool = False,
    resolved_in_release: str | None = None,
    pr_url: str | None = None,
    tests: list[str] | None = None,
    is_admin: bool = False,
) -> BugReport:
    """Resolve (or hand over for verification) with notes, commits and evidence (`pr_url`,
    `tests`); clears the claim."""
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if not is_admin:
            require_token(report, claim_token, now)
        changes: dict[str, Any] = {}
        if resolved_in_release:
            changes["resolved_in_release"] = resolved_in_release
        if pr_url is not None:
            changes["pr_url"] = pr_url
        if tests is not None:
            changes["tests"] = list(tests)
        return resolve_claimed(
            report,
            actor=actor,
            notes=resolution_notes or report.resolution_notes,
            message=resolution_notes,
            commit_shas=commit_shas,
            verify=verify,
            changes=changes,
            now=now,
        )


def resolve_claimed(
    report: BugReport,
    *,
    actor: str,
    notes: str,
    message: str,
    commit_shas: list[str] | None,
    verify: bool,
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
    exit_code: int | None = None,
    output_tail: str = "",
) -> BugReport:
    """What a resolution writes, for an agent's resolve and the worker's alike: a locked
    report whose claim was checked goes to `resolved` (or `awaiting_verification`) with its
    notes, commits and who resolved it, its claim cleared and its attempt closed as
    `resolved` (`taken_over` when an admin resolves over someone else's live claim), a
    `resolved` event (`data` added to it), and its open duplicates follow it."""
    now = now or db_now()
    target = Status.AWAITING_VERIFICATION if verify else Status.RESOLVED
    before = report.status
    over_someone = report.claim_is_live(now) and report.claim_holder != actor
    close_attempt(
        report,
        outcome=AttemptOutcome.TAKEN_OVER if over_someone else AttemptOutcome.RESOLVED,
        note=f"Resolved by {actor}." if over_someone else "",
        exit_code=exit_code,
        output_tail=output_tail,
        now=now,
    )
    written: dict[str, Any] = status_changes(report, target) if before != target else {}
    written.update(
        NO_CLAIM,
        resolution_notes=notes,
        commit_shas=list(commit_shas) if commit_shas is not None else report.commit_shas,
        resolved_by=actor,
        verified_by=None,
        verified_at=None,
        **(changes or {}),
    )
    save_changes(report, written)
    write_event(
        report=report,
        kind=EventKind.RESOLVED,
        actor=actor,
        message=message,
        data={
            "from": before,
            "to": target,
            "commit_shas": report.commit_shas,
            "verify": verify,
            "pr_url": report.pr_url,
            "tests": report.tests,
            **(data or {}),
        },
    )
    if target == Status.RESOLVED:
        resolve_duplicates(report=report, actor=actor)
    return report


def report_verify(
    *,
    report_id,
    actor: str,
    outcome: str,
    note: str = "",
    claim_token: str | None = None,
    is_admin: bool = False,
) -> BugReport:
    """Verify a fix awaiting verification. `passed`: `resolved`, with `verified_by` and
    `verified_at`. `failed`: `triaged`, back in the pool, the fixing attempt marked failed.
    The fixer's notes stay; the verifier's note is `verification_notes` and the event's
    message. The key that resolved it may not verify it (admins may)."""
    outcome = Verification(outcome)
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if report.status != Status.AWAITING_VERIFICATION:
            raise TransitionNotAllowed(
                f"Only a report awaiting verification can be verified; this one is {report.status}.",
                allowed=[],
            )
        if not is_admin and report.resolved_by == actor:
            raise OwnFixNotVerifiable(
                f"{actor} resolved this report and may not verify its own fix; another agent "
                "or an admin must.",
                resolved_by=report.resolved_by,
            )
        check_claim(report, claim_token=claim_token, is_admin=is_admin)
        close_attempt(
            report,
            outcome=AttemptOutcome.RESOLVED,
            reason=f"verification_{outcome.value}",
            note=note,
            now=now,
        )
        fix = fixing_attempt(report)
        if fix is not None:
            ClaimAttempt.objects.filter(pk=fix.pk).update(verification=outcome.value)
        if outcome == Verification.PASSED:
            changes = status_changes(report, Status.RESOLVED)
            changes.update(verified_by=actor, verified_at=now)
        else:
            changes = status_changes(report, Status.TRIAGED)
            changes.update(assignee_id=None, verified_by=None, verified_at=None)
        changes.update(NO_CLAIM, verification_notes=note)
        save_changes(report, changes)
        write_event(
            report=report,
            kind=EventKind.VERIFIED,
            actor=actor,
            message=note,
            data={
                "outcome": outcome.value,
                "fixed_by": report.resolved_by,
                "attempt": fix.claim_epoch if fix is not None else None,
            },
        )
        if outcome == Verification.PASSED:
            resolve_duplicates(report=report, actor=actor)
        return report


def leases_sweep() -> int:
    """Clear expired claims (their attempts closed as `expired`, a `lease_expired` event
    each); returns how many."""
    now = db_now()
    count = 0
    expired = BugReport.objects.filter(claim_holder__isnull=False, claim_expires_at__lte=now)
    for report_id in expired.values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            report = lock_report(report_id)
            if report.claim_holder and report.claim_expires_at and report.claim_expires_at <= now:
                was_waiting = report.needs_human
                changes = end_lapsed_claim(report, now)
                save_changes(report, {**changes, **NO_CLAIM})
                if report.needs_human and not was_waiting:
                    write_needs_human(report, actor=LEASE_EXPIRED_ACTOR, why="leases expired")
                count += 1
    return count


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
