"""Submission and updates of a bug report: one transaction each, each writing its event.

Claims (claim, heartbeat, release, resolve) are in `claims.py`; how any change is written
and what a status move implies is in `lifecycle.py`. Submission asks dedup to group the
report and makes the status move dedup's outcome names (a regression, a stale occurrence).
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from bugtracker.domain import InvalidInput, PreconditionFailed
from dedup.grouping import StatusMove, group_submission

from .claims import check_claim
from .errors import AdminRequired
from .lifecycle import (
    lock_report,
    resolve_duplicates,
    save_changes,
    sla_due_for,
    status_changes,
    write_event,
)
from .models import BugReport, BugReportEvent, EventKind, Severity, Status
from .signals import announce_change
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
    "needs_human",
    "metadata",
)


def report_create(
    *,
    actor: str,
    data: dict[str, Any],
    created_at: datetime | None = None,
    client_fingerprint: list[str] | None = None,
) -> BugReport:
    """Insert one report with its `created` event, grouped by dedup in the same transaction."""
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
        grouped = group_submission(
            report=report, actor=actor, writes=writes, client_fingerprint=client_fingerprint
        )
        if grouped.follow_up is not None:
            _make_move(grouped.follow_up, actor=actor)
        announce_change(report.pk)
        return report


def _make_move(move: StatusMove, *, actor: str) -> None:
    """A status move grouping asked for (a regression reopening its canonical, a stale
    occurrence following it), with its event."""
    save_changes(move.report, status_changes(move.report, move.to_status))
    write_event(
        report=move.report, kind=move.kind, actor=actor, message=move.message, data=move.data
    )


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


def _check_version(report: BugReport, expected_version: int | None) -> None:
    if expected_version is not None and report.version != expected_version:
        raise PreconditionFailed(
            f"If-Match version {expected_version} is stale; the report is at version "
            f"{report.version}.",
            current_version=report.version,
        )


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
        report = lock_report(report_id)
        _check_version(report, expected_version)
        check_claim(report, claim_token=claim_token, is_admin=is_admin)
        changes = {k: v for k, v in data.items() if getattr(report, k) != v}
        if not changes:
            return report
        if changes.get("needs_human") is False:
            if not is_admin:
                raise AdminRequired(
                    "Clearing needs_human takes a human: this call needs the admin role.",
                    required_role="admin",
                    allowed_roles=["admin"],
                )
            # A human looked at it: a fresh set of attempts, no cooldown.
            changes.update(attempts=0, next_attempt_at=None)
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
            changes.update(status_changes(report, new_status))
        save_changes(report, changes)
        if new_status is not None:
            write_event(
                report=report,
                kind=EventKind.STATUS_CHANGED,
                actor=actor,
                message=f"{old['status']} → {new_status}",
                data={"from": old["status"], "to": new_status},
            )
        for field, before in old.items():
            if field == "status":
                continue
            write_event(
                report=report,
                kind=EventKind.FIELD_CHANGED,
                actor=actor,
                message=f"{field} changed",
                data={
                    "field": field,
                    "from": _event_value(before),
                    "to": _event_value(getattr(report, field)),
                },
            )
        if new_status == Status.RESOLVED:
            resolve_duplicates(report=report, actor=actor)
        return report


def report_transition(*, report_id, to_status: str, actor: str, message: str = "") -> BugReport:
    """Move a report along the lifecycle; illegal moves raise TransitionNotAllowed (409)."""
    with transaction.atomic():
        report = lock_report(report_id)
        before = report.status
        save_changes(report, status_changes(report, to_status))
        write_event(
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
    *,
    report_id,
    kind: str,
    actor: str,
    message: str = "",
    data: dict | None = None,
    claim_token: str | None = None,
    is_admin: bool = False,
) -> BugReportEvent:
    """An agent log or note: appends to the history and bumps the version. While someone
    holds a live claim, only its token (or an admin) may write."""
    with transaction.atomic():
        report = lock_report(report_id)
        check_claim(report, claim_token=claim_token, is_admin=is_admin)
        save_changes(report, {})
        return write_event(report=report, kind=kind, actor=actor, message=message, data=data)


def _event_value(value):
    """A field's value as an event stores it: times as ISO 8601 (next_attempt_at, sla_due_at)."""
    return value.isoformat() if isinstance(value, datetime) else value
