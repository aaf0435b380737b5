"""Every state change of a bug report: one transaction each, each writing its event."""

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from bugtracker.domain import InvalidInput, NotFound, PreconditionFailed
from bugtracker.rows import columns, from_row, select_list

from .errors import ClaimConflict, LeaseLost, NotClaimable, TransitionNotAllowed, VersionConflict
from .legacy.mirror import mirror_on_commit
from .models import (
    ALLOWED_TRANSITIONS,
    DONE_STATUSES,
    SEVERITY_RANK,
    BugReport,
    BugReportEvent,
    EventKind,
    Severity,
    Status,
)
from .selectors import report_with_counts
from .writes import Writes

# Fields an agent may change through report_update; the rest move only through their own service.
UPDATABLE_FIELDS = (
    "title",
    "description",
    "severity",
    "category",
    "component",
    "route",
    "environment",
    "status",
    "assignee_id",
    "resolution_notes",
    "commit_shas",
    "automation_enabled",
    "metadata",
)

# The column values of a report nobody holds a claim on.
NO_CLAIM = {"claim_holder": None, "claim_token_hash": None, "claim_expires_at": None}

DEFAULT_LEASE_SECONDS = 900
MAX_LEASE_SECONDS = 86400
CLAIMABLE_STATUSES = (Status.NEW, Status.TRIAGED, Status.IN_PROGRESS)
REPORT_COLUMNS = columns(BugReport)


def sla_due_for(*, severity: str, created_at: datetime) -> datetime:
    return created_at + timedelta(hours=settings.SLA_HOURS[severity])


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def event_write(
    *,
    report: BugReport,
    kind: str,
    actor: str = "",
    message: str = "",
    data: dict | None = None,
    created_at: datetime | None = None,
) -> BugReportEvent:
    """Append one event; callers are already inside the transaction of their change."""
    return BugReportEvent.objects.create(
        report=report,
        kind=kind,
        actor=actor or "",
        message=message or "",
        data=data or {},
        created_at=created_at or timezone.now(),
    )


def _locked(report_id) -> BugReport:
    try:
        return BugReport.objects.select_for_update().get(pk=report_id)
    except BugReport.DoesNotExist:
        raise NotFound(f"Bug report {report_id} does not exist.") from None


def _save(report: BugReport, changes: dict[str, Any]) -> BugReport:
    """Compare-and-set write of `changes`; bumps `version` and `updated_at`."""
    now = timezone.now()
    count = BugReport.objects.filter(pk=report.pk, version=report.version).update(
        **changes, updated_at=now, version=F("version") + 1
    )
    if count != 1:
        raise VersionConflict("The report changed while this request was being applied; retry.")
    for field, value in changes.items():
        setattr(report, field, value)
    report.updated_at = now
    report.version += 1
    mirror_on_commit(report.pk)  # LEGACY_MIRROR_DIR, when set, after the commit
    return report


def _check_version(report: BugReport, expected_version: int | None) -> None:
    if expected_version is not None and report.version != expected_version:
        raise PreconditionFailed(
            f"If-Match version {expected_version} is stale; the report is at version "
            f"{report.version}.",
            current_version=report.version,
        )


def _check_claim(report: BugReport, *, claim_token: str | None, is_admin: bool) -> None:
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


def _status_changes(report: BugReport, to_status: str) -> dict[str, Any]:
    """The column changes a move to `to_status` implies, after checking it is allowed."""
    if to_status not in ALLOWED_TRANSITIONS.get(report.status, set()):
        raise TransitionNotAllowed(
            f"Cannot move a report from {report.status} to {to_status}.",
            allowed=sorted(ALLOWED_TRANSITIONS.get(report.status, set())),
        )
    changes: dict[str, Any] = {"status": to_status}
    if to_status == Status.RESOLVED:
        changes["resolved_at"] = timezone.now()
    elif report.status in DONE_STATUSES and to_status not in DONE_STATUSES:
        changes["resolved_at"] = None
    if to_status in DONE_STATUSES or to_status in (Status.NEW, Status.TRIAGED):
        changes.update(NO_CLAIM)
    return changes


def report_create(
    *,
    actor: str,
    data: dict[str, Any],
    created_at: datetime | None = None,
    client_fingerprint: list[str] | None = None,
) -> BugReport:
    """Insert one report with its `created` event. Dedup and enrichment hook in here."""
    from dedup.services import report_group_new  # dedup imports this module

    # No savepoint inside a caller's transaction (an Idempotency-Key's): two round trips
    # per submission, and a failure here fails the whole request anyway.
    with transaction.atomic(savepoint=False):
        report = report_build(data=data, created_at=created_at)
        writes = Writes()
        writes.insert(report)
        writes.event(
            report=report, kind=EventKind.CREATED, actor=actor, created_at=report.created_at
        )
        # Dedup sends these with its own writes: one statement for a duplicate of a live
        # group on PostgreSQL.
        report_group_new(
            report=report, actor=actor, writes=writes, client_fingerprint=client_fingerprint
        )
        mirror_on_commit(report.pk)  # LEGACY_MIRROR_DIR, when set, after the commit
        return report


def report_build(*, data: dict[str, Any], created_at: datetime | None = None) -> BugReport:
    """An unsaved report from validated data, with its SLA due time."""
    now = created_at or timezone.now()
    report = BugReport(**data)
    report.created_at = data.get("created_at") or now
    report.updated_at = data.get("updated_at") or report.created_at
    if report.severity not in Severity.values:
        raise InvalidInput("severity", f"Unknown severity {report.severity!r}.")
    if report.sla_due_at is None:
        report.sla_due_at = sla_due_for(severity=report.severity, created_at=report.created_at)
    return report


def report_update(
    *,
    report_id,
    actor: str,
    data: dict[str, Any],
    expected_version: int | None = None,
    claim_token: str | None = None,
    is_admin: bool = False,
) -> BugReport:
    """Change triage fields (and status, by the lifecycle rules); one event per changed field."""
    unknown = set(data) - set(UPDATABLE_FIELDS)
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidInput(field, f"{field} cannot be changed here.")
    with transaction.atomic():
        report = _locked(report_id)
        _check_version(report, expected_version)
        _check_claim(report, claim_token=claim_token, is_admin=is_admin)
        changes = {k: v for k, v in data.items() if getattr(report, k) != v}
        if not changes:
            return report
        old = {k: getattr(report, k) for k in changes}
        new_status = changes.pop("status", None)
        if "severity" in changes:
            changes["sla_due_at"] = sla_due_for(
                severity=changes["severity"], created_at=report.created_at
            )
        if changes.get("automation_enabled") is True:
            # Turning automation back on gives the report a fresh set of attempts.
            changes.update(attempts=0, next_attempt_at=None)
        if new_status is not None:
            changes.update(_status_changes(report, new_status))
        _save(report, changes)
        if new_status is not None:
            event_write(
                report=report,
                kind=EventKind.STATUS_CHANGED,
                actor=actor,
                message=f"{old['status']} → {new_status}",
                data={"from": old["status"], "to": new_status},
            )
        for field, before in old.items():
            if field == "status":
                continue
            event_write(
                report=report,
                kind=EventKind.FIELD_CHANGED,
                actor=actor,
                message=f"{field} changed",
                data={"field": field, "from": before, "to": getattr(report, field)},
            )
        if new_status == Status.RESOLVED:
            resolve_duplicates(report=report, actor=actor)
        return report


def report_transition(*, report_id, to_status: str, actor: str, message: str = "") -> BugReport:
    """Move a report along the lifecycle; illegal moves raise TransitionNotAllowed (409)."""
    with transaction.atomic():
        report = _locked(report_id)
        before = report.status
        _save(report, _status_changes(report, to_status))
        event_write(
            report=report,
            kind=EventKind.STATUS_CHANGED,
            actor=actor,
            message=message or f"{before} → {to_status}",
            data={"from": before, "to": to_status},
        )
        if to_status == Status.RESOLVED:
            resolve_duplicates(report=report, actor=actor)
        return report


def report_add_event(
    *, report_id, kind: str, actor: str, message: str = "", data: dict | None = None
) -> BugReportEvent:
    """An agent log or note: appends to the history and bumps the version."""
    with transaction.atomic():
        report = _locked(report_id)
        _save(report, {})
        return event_write(report=report, kind=kind, actor=actor, message=message, data=data)


# Claims -------------------------------------------------------------------------------------


def _lease(lease_seconds: int | None) -> timedelta:
    seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else int(lease_seconds)
    if not 1 <= seconds <= MAX_LEASE_SECONDS:
        raise InvalidInput(
            "lease_seconds", f"lease_seconds must be between 1 and {MAX_LEASE_SECONDS}."
        )
    return timedelta(seconds=seconds)


def _note_expired_lease(report: BugReport, now: datetime) -> None:
    if report.claim_holder and report.claim_expires_at and report.claim_expires_at <= now:
        event_write(
            report=report,
            kind=EventKind.LEASE_EXPIRED,
            actor="system",
            message=f"Lease of {report.claim_holder} expired at {report.claim_expires_at.isoformat()}.",
            data={"holder": report.claim_holder, "expired_at": report.claim_expires_at.isoformat()},
        )


def _take_claim(
    report: BugReport, *, actor: str, lease: timedelta, now: datetime
) -> tuple[BugReport, str]:
    _note_expired_lease(report, now)
    token = secrets.token_urlsafe(32)
    changes: dict[str, Any] = {
        "claim_holder": actor,
        "claim_token_hash": hash_token(token),
        "claim_expires_at": now + lease,
        "assignee_id": actor,
    }
    before = report.status
    if before != Status.IN_PROGRESS:
        changes.update(_status_changes(report, Status.IN_PROGRESS))
    _save(report, changes)
    event_write(
        report=report,
        kind=EventKind.CLAIMED,
        actor=actor,
        message=f"Claimed until {report.claim_expires_at.isoformat()}.",
        data={"from_status": before, "lease_seconds": int(lease.total_seconds())},
    )
    return report, token


def report_claim(
    *, report_id, actor: str, lease_seconds: int | None = None
) -> tuple[BugReport, str]:
    """Claim one report for `actor`; returns the report and the token (shown only here)."""
    lease = _lease(lease_seconds)
    with transaction.atomic():
        report = _locked(report_id)
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
        return _take_claim(report, actor=actor, lease=lease, now=now)


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
    for field in ("category", "component"):
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
    lease = _lease(lease_seconds)
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
        report, token = _take_claim(report, actor=actor, lease=lease, now=now)
        # Read in the claim's transaction: a token is never lost to a failed read.
        return report_with_counts(report), token


def _sql_isoformat(column: str) -> str:
    """SQL spelling `column` (a UTC timestamptz) as datetime.isoformat() does, as the
    Python-side events do: microseconds only when there are any."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') """
        f"|| CASE WHEN mod(date_part('microseconds', {utc})::bigint, 1000000) = 0 THEN '' "
        f"ELSE to_char({utc}, '.US') END || '+00:00'"
    )


# claimable_reports() + _take_claim() + their events as one statement: pick the first
# claimable row with SKIP LOCKED, take it and write its `lease_expired` (when a lapsed lease
# is taken over) and `claimed` events, in one round trip and without a transaction block
# around it. The ORM form compiled three queries per claim plus BEGIN and COMMIT, 4 ms of
# CPU; this is what benchmarks/claims.py measures against bare SQL.
_CLAIM_NEXT_SQL = """
WITH picked AS (
    SELECT id, status, claim_holder, claim_expires_at FROM bug_reports
     WHERE {where}
     ORDER BY severity_rank, sla_due_at, created_at, id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE bug_reports AS r
       SET claim_holder = %(actor)s, claim_token_hash = %(token_hash)s,
           claim_expires_at = statement_timestamp() + %(lease)s, assignee_id = %(actor)s,
           status = 'in_progress', updated_at = %(now)s, version = r.version + 1
      FROM picked
     WHERE r.id = picked.id
 RETURNING {report_columns}, picked.status AS previous_status, picked.claim_holder AS previous_holder,
           picked.claim_expires_at AS previous_expiry
), events AS (
    INSERT INTO bug_report_events (report_id, kind, actor, message, data, created_at)
    SELECT id, kind, actor, message, data, %(now)s FROM (
        SELECT 1 AS step, id, 'lease_expired' AS kind, 'system' AS actor,
               'Lease of ' || previous_holder || ' expired at ' || {previous_expiry} || '.'
                   AS message,
               jsonb_build_object('holder', previous_holder, 'expired_at', {previous_expiry})
                   AS data
          FROM claimed
         WHERE previous_holder IS NOT NULL AND previous_expiry <= statement_timestamp()
        UNION ALL
        SELECT 2, id, 'claimed', %(actor)s, 'Claimed until ' || {expires_at} || '.',
               jsonb_build_object('from_status', previous_status, 'lease_seconds', %(seconds)s)
          FROM claimed
    ) AS written
     ORDER BY step
)
SELECT claimed.*,
       -- what the API shows beside the row (selectors.report_with_counts), in the same trip
       COALESCE((SELECT g.occurrences FROM bug_report_dedup g
                  WHERE g.id = claimed.dedup_group_id), 1) AS group_occurrences,
       (SELECT COUNT(*) FROM bug_reports d WHERE d.duplicate_of_id = claimed.id)
           AS duplicates_total
  FROM claimed
""".format(
    where="{where}",
    report_columns=select_list(BugReport, REPORT_COLUMNS, "r"),
    previous_expiry=_sql_isoformat("previous_expiry"),
    expires_at=_sql_isoformat("claim_expires_at"),
)


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
    }
    if filters.get("severity"):
        where.append("severity = ANY(%(severity)s)")
        params["severity"] = [Severity(s).value for s in filters["severity"]]
    if filters.get("min_severity"):
        where.append("severity_rank <= %(min_rank)s")
        params["min_rank"] = severity_rank(filters["min_severity"])
    for field in ("category", "component"):
        if filters.get(field):
            where.append(f"{field} = ANY(%({field})s)")
            params[field] = _as_list(filters[field])
    if filters.get("automation_only"):
        where.append(
            "automation_enabled AND (next_attempt_at IS NULL "
            "OR next_attempt_at <= statement_timestamp())"
        )
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_NEXT_SQL.replace("{where}", " AND ".join(where)), params)
        row = cursor.fetchone()
    if row is None:
        return None
    report = from_row(BugReport, REPORT_COLUMNS, row)
    report.group_occurrences, report.duplicates_total = row[-2], row[-1]
    mirror_on_commit(report.pk)  # LEGACY_MIRROR_DIR, when set, after the commit
    return report, token


def report_heartbeat(
    *, report_id, actor: str, claim_token: str, lease_seconds: int | None = None
) -> BugReport:
    lease = _lease(lease_seconds)
    with transaction.atomic():
        report = _locked(report_id)
        now = db_now()
        _require_token(report, claim_token, now)
        _save(report, {"claim_expires_at": now + lease})
        return report


def _require_token(report: BugReport, claim_token: str | None, now: datetime) -> None:
    if not report.claim_is_live(now) or not claim_token:
        raise LeaseLost(
            "This report holds no live claim for that token; the lease was lost or expired."
        )
    if not secrets.compare_digest(hash_token(claim_token), report.claim_token_hash or ""):
        raise LeaseLost("The claim token does not match the live claim; the lease was lost.")


def report_release(
    *, report_id, actor: str, claim_token: str | None, note: str = "", is_admin: bool = False
) -> BugReport:
    """Give a claimed report back: status `triaged`, claim cleared, an optional note."""
    with transaction.atomic():
        report = _locked(report_id)
        now = db_now()
        if not is_admin:
            _require_token(report, claim_token, now)
        holder = report.claim_holder
        changes: dict[str, Any] = dict(NO_CLAIM)
        if report.status != Status.TRIAGED:
            changes.update(_status_changes(report, Status.TRIAGED))
        _save(report, changes)
        event_write(
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
        report = _locked(report_id)
        now = db_now()
        if not is_admin:
            _require_token(report, claim_token, now)
        target = Status.AWAITING_VERIFICATION if verify else Status.RESOLVED
        before = report.status
        changes: dict[str, Any] = {}
        if before != target:
            changes.update(_status_changes(report, target))
        changes.update(
            NO_CLAIM,
            resolution_notes=resolution_notes or report.resolution_notes,
            commit_shas=list(commit_shas) if commit_shas is not None else report.commit_shas,
        )
        if resolved_in_release:
            changes["resolved_in_release"] = resolved_in_release
        _save(report, changes)
        event_write(
            report=report,
            kind=EventKind.RESOLVED,
            actor=actor,
            message=resolution_notes,
            data={
                "from": before,
                "to": target,
                "commit_shas": report.commit_shas,
                "verify": verify,
            },
        )
        if target == Status.RESOLVED:
            resolve_duplicates(report=report, actor=actor)
        return report


def resolve_duplicates(*, report: BugReport, actor: str) -> int:
    """Open duplicates follow their canonical into `resolved`."""
    count = 0
    open_duplicates = report.duplicates.select_for_update().exclude(status__in=DONE_STATUSES)
    for duplicate in open_duplicates:
        _save(duplicate, {"status": Status.RESOLVED, "resolved_at": timezone.now(), **NO_CLAIM})
        event_write(
            report=duplicate,
            kind=EventKind.RESOLVED,
            actor=actor,
            message=f"Resolved with its canonical report {report.pk}.",
            data={"canonical": str(report.pk)},
        )
        count += 1
    return count


def leases_sweep() -> int:
    """Clear expired claims, writing a `lease_expired` event for each; returns how many."""
    now = db_now()
    count = 0
    expired = BugReport.objects.filter(claim_holder__isnull=False, claim_expires_at__lte=now)
    for report_id in expired.values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            report = _locked(report_id)
            if report.claim_holder and report.claim_expires_at and report.claim_expires_at <= now:
                _note_expired_lease(report, now)
                _save(report, dict(NO_CLAIM))
                count += 1
    return count


def db_now() -> datetime:
    """The database's clock on PostgreSQL (leases must not depend on one host's clock)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()
