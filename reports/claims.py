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

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from bugtracker.domain import InvalidInput
from bugtracker.rows import columns, from_row, select_list
from bugtracker.sql import isoformat_sql

from . import event_hooks
from .errors import ClaimConflict, LeaseLost, NotClaimable
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
from .models import SEVERITY_RANK, BugReport, EventKind, Severity, Status
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
    EventKind.CLAIMED, "Claimed until {expires_at}.", ("from_status", "lease_seconds")
)
LEASE_EXPIRED_ACTOR = "system"


def claim_columns(*, holder, token_hash, expires_at) -> dict[str, Any]:
    """The columns a claim sets besides its status move (to `in_progress`): values for the
    ORM form, SQL expressions for the statement."""
    return {
        "claim_holder": holder,
        "claim_token_hash": token_hash,
        "claim_expires_at": expires_at,
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


def note_expired_lease(report: BugReport, now: datetime) -> None:
    if report.claim_holder and report.claim_expires_at and report.claim_expires_at <= now:
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


def take_claim(
    report: BugReport, *, actor: str, lease: timedelta, now: datetime
) -> tuple[BugReport, str]:
    """Claim a locked, claimable report for `actor`: its columns, status and events."""
    note_expired_lease(report, now)
    token = secrets.token_urlsafe(32)
    changes = claim_columns(holder=actor, token_hash=hash_token(token), expires_at=now + lease)
    before = report.status
    if before != Status.IN_PROGRESS:
        changes.update(status_changes(report, Status.IN_PROGRESS))
    save_changes(report, changes)
    values = {
        "expires_at": report.claim_expires_at.isoformat(),
        "from_status": before,
        "lease_seconds": int(lease.total_seconds()),
    }
    write_event(
        report=report,
        kind=CLAIMED.kind,
        actor=actor,
        message=CLAIMED.message(**values),
        data=CLAIMED.data(**values),
    )
    return report, token


def report_claim(
    *, report_id, actor: str, lease_seconds: int | None = None
) -> tuple[BugReport, str]:
    """Claim one report for `actor`; returns the report and the token (shown only here)."""
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
        if report.claim_is_live(now):
            raise ClaimConflict(
                f"Report is claimed by {report.claim_holder} until {report.claim_expires_at.isoformat()}.",
                holder=report.claim_holder,
            )
        return take_claim(report, actor=actor, lease=lease, now=now)


def claimable_reports(*, now: datetime, filters: dict[str, Any] | None = None):
    """Open, canonical, unclaimed (or lease-expired) reports in priority order."""
    filters = filters or {}
    qs = BugReport.objects.filter(
        Q(claim_holder__isnull=True) | Q(claim_expires_at__lte=now),
        status__in=filters.get("statuses") or CLAIMABLE_STATUSES,
        duplicate_of__isnull=True,
    )
    if filters.get("severity"):
        qs = qs.filter(severity__in=filters["severity"])
    if filters.get("min_severity"):
        qs = qs.filter(severity_rank__lte=severity_rank(filters["min_severity"]))
    for field in ANY_OF_FILTERS:
        if filters.get(field):
            qs = qs.filter(**{f"{field}__in": _as_list(filters[field])})
    if filters.get("automation_only"):
        qs = qs.filter(automation_enabled=True).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )
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
    statuses = (filters or {}).get("statuses") or CLAIMABLE_STATUSES
    if connection.vendor == "postgresql" and set(statuses) <= set(CLAIMABLE_STATUSES):
        # One statement (claim, events, counts): atomic by itself, no BEGIN/COMMIT needed.
        return _claim_next_postgresql(actor=actor, lease=lease, filters=filters or {})
    # savepoint=False: inside a caller's transaction a savepoint is two more round trips per
    # claim, and any error here fails the whole request anyway.
    with transaction.atomic(savepoint=False):
        now = db_now()
        report = (
            claimable_reports(now=now, filters=filters)
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if report is None:
            return None
        report, token = take_claim(report, actor=actor, lease=lease, now=now)
        # Read in the claim's transaction: a token is never lost to a failed read.
        return report_with_counts(report), token


# The PostgreSQL form ----------------------------------------------------------------------


@cache
def _claim_next_statement() -> str:
    """claimable_reports() + take_claim() + their events as one statement, from the claim's
    description: pick the first claimable row with SKIP LOCKED, take it and write its
    `lease_expired` (when a lapsed lease is taken over) and `claimed` events, in one round
    trip and without a transaction block around it. The ORM form compiled three queries per
    claim plus BEGIN and COMMIT, 4 ms of CPU; this is what benchmarks/claims.py measures
    against bare SQL. `{where}` is left for the filters, `{listeners}` for what event
    listeners (the webhook outbox) write with the `claimed` event (`_claim_listener_parts`)."""
    fields = {f.attname: f.column for f in BugReport._meta.concrete_fields}
    claim = claim_columns(
        holder="%(actor)s",
        token_hash="%(token_hash)s",
        expires_at="statement_timestamp() + %(lease)s",
    )
    sets = {**claim, "status": "%(in_progress)s", "updated_at": "%(now)s"}
    set_list = ", ".join(f"{fields[name]} = {value}" for name, value in sets.items())
    expired = {"holder": "previous_holder", "expired_at": isoformat_sql("previous_expiry")}
    claimed = {
        "expires_at": isoformat_sql("claim_expires_at"),
        "from_status": "previous_status",
        "lease_seconds": "%(seconds)s",
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
    # queue index; every other value is a parameter.
    where = [
        "status IN ({})".format(", ".join(f"'{s}'" for s in statuses)),
        "duplicate_of_id IS NULL",
        "(claim_holder IS NULL OR claim_expires_at <= statement_timestamp())",
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
        where.append(
            "automation_enabled AND (next_attempt_at IS NULL "
            "OR next_attempt_at <= statement_timestamp())"
        )
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
    """LeaseLost unless `claim_token` is the token of the report's live claim."""
    if not report.claim_is_live(now) or not claim_token:
        raise LeaseLost(
            "This report holds no live claim for that token; the lease was lost or expired."
        )
    if not secrets.compare_digest(hash_token(claim_token), report.claim_token_hash or ""):
        raise LeaseLost("The claim token does not match the live claim; the lease was lost.")


def check_claim(report: BugReport, *, claim_token: str | None, is_admin: bool) -> None:
    """A live claim of someone else blocks changes unless its token or an admin comes along."""
    if is_admin or not report.claim_is_live():
        return
    if claim_token and secrets.compare_digest(hash_token(claim_token), report.claim_token_hash):
        return
    if claim_token:
        raise LeaseLost(
            "The claim token does not match the live claim on this report; the lease was lost."
        )
    raise ClaimConflict(
        f"Report is claimed by {report.claim_holder} until "
        f"{report.claim_expires_at.isoformat()}; send its X-Claim-Token.",
        holder=report.claim_holder,
    )


def report_heartbeat(
    *, report_id, actor: str, claim_token: str, lease_seconds: int | None = None
) -> BugReport:
    lease = lease_length(lease_seconds)
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        require_token(report, claim_token, now)
        save_changes(report, {"claim_expires_at": now + lease})
        return report


def report_release(
    *, report_id, actor: str, claim_token: str | None, note: str = "", is_admin: bool = False
) -> BugReport:
    """Give a claimed report back: status `triaged`, claim cleared, an optional note."""
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if not is_admin:
            require_token(report, claim_token, now)
        holder = report.claim_holder
        changes: dict[str, Any] = dict(NO_CLAIM)
        if report.status != Status.TRIAGED:
            changes.update(status_changes(report, Status.TRIAGED))
        save_changes(report, changes)
        write_event(
            report=report,
            kind=EventKind.RELEASED,
            actor=actor,
            message=note,
            data={"holder": holder},
        )
        return report


def report_resolve(
    *,
    report_id,
    actor: str,
    claim_token: str | None,
    resolution_notes: str = "",
    commit_shas: list[str] | None = None,
    verify: bool = False,
    resolved_in_release: str | None = None,
    is_admin: bool = False,
) -> BugReport:
    """Resolve (or hand over for verification) with notes and commits; clears the claim."""
    with transaction.atomic():
        report = lock_report(report_id)
        now = db_now()
        if not is_admin:
            require_token(report, claim_token, now)
        return resolve_claimed(
            report,
            actor=actor,
            notes=resolution_notes or report.resolution_notes,
            message=resolution_notes,
            commit_shas=commit_shas,
            verify=verify,
            changes={"resolved_in_release": resolved_in_release} if resolved_in_release else {},
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
) -> BugReport:
    """What a resolution writes, for an agent's resolve and the worker's alike: a locked
    report whose claim was checked goes to `resolved` (or `awaiting_verification`) with its
    notes and commits, its claim cleared, a `resolved` event (`data` added to it), and its
    open duplicates follow it."""
    target = Status.AWAITING_VERIFICATION if verify else Status.RESOLVED
    before = report.status
    written: dict[str, Any] = status_changes(report, target) if before != target else {}
    written.update(
        NO_CLAIM,
        resolution_notes=notes,
        commit_shas=list(commit_shas) if commit_shas is not None else report.commit_shas,
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
            **(data or {}),
        },
    )
    if target == Status.RESOLVED:
        resolve_duplicates(report=report, actor=actor)
    return report


def leases_sweep() -> int:
    """Clear expired claims, writing a `lease_expired` event for each; returns how many."""
    now = db_now()
    count = 0
    expired = BugReport.objects.filter(claim_holder__isnull=False, claim_expires_at__lte=now)
    for report_id in expired.values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            report = lock_report(report_id)
            if report.claim_holder and report.claim_expires_at and report.claim_expires_at <= now:
                note_expired_lease(report, now)
                save_changes(report, dict(NO_CLAIM))
                count += 1
    return count
