"""The lifecycle of one report: how a change is written, what a status move implies, its events.

The public names here are what every room that changes a report uses (claims, submission,
dedup, remediation, telemetry): `lock_report`, `save_changes`, `status_changes`,
`write_event`, `NO_CLAIM`, `sla_due_for`. It imports neither dedup nor legacy: they sit
above it.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from bugtracker.domain import NotFound
from bugtracker.sql import jsonb_object_sql, text_sql

from . import event_hooks
from .errors import TransitionNotAllowed, VersionConflict
from .models import ALLOWED_TRANSITIONS, DONE_STATUSES, BugReport, BugReportEvent, EventKind, Status
from .signals import announce_change

# The column values of a report nobody holds a claim on.
NO_CLAIM = {"claim_holder": None, "claim_token_hash": None, "claim_expires_at": None}


def sla_due_for(*, severity: str, created_at: datetime) -> datetime:
    return created_at + timedelta(hours=settings.SLA_HOURS[severity])


def lock_report(report_id) -> BugReport:
    """The report, locked for the rest of the transaction; NotFound (404) when there is none."""
    try:
        return BugReport.objects.select_for_update().get(pk=report_id)
    except (BugReport.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Bug report {report_id} does not exist.") from None


def save_changes(report: BugReport, changes: dict[str, Any]) -> BugReport:
    """Compare-and-set write of `changes`; bumps `version` and `updated_at`.

    Raises VersionConflict (409) when the row moved since `report` was read. Listeners of
    `report_changed` hear of it after the commit.
    """
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
    announce_change(report.pk)
    return report


def status_changes(report: BugReport, to_status: str) -> dict[str, Any]:
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


def write_event(
    *,
    report: BugReport,
    kind: str,
    actor: str = "",
    message: str = "",
    data: dict | None = None,
    created_at: datetime | None = None,
) -> BugReportEvent:
    """Append one event; callers are already inside the transaction of their change. What
    event listeners (the webhook outbox: reports/event_hooks.py) write with it goes in the
    same transaction."""
    event = BugReportEvent.objects.create(
        report=report,
        kind=kind,
        actor=actor or "",
        message=message or "",
        data=data or {},
        created_at=created_at or timezone.now(),
    )
    told = event_hooks.statements_for(
        kind=kind, report=report, data=event.data, created_at=event.created_at
    )
    if told:
        with connection.cursor() as cursor:
            for sql, params in told:
                cursor.execute(sql, params)
    return event


def db_now() -> datetime:
    """The database's clock on PostgreSQL (leases must not depend on one host's clock)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


class EventText:
    """One kind of event described once: its message template and data, from named values.

    Called with Python values it gives what `write_event` writes; called with SQL
    expressions (`sql=True`) it gives the SQL that makes the same message and data inside a
    statement, so a fast SQL path never restates a text.
    """

    def __init__(self, kind: str, template: str, data: tuple[str, ...]):
        self.kind, self.template, self.data_keys = kind, template, data

    def message(self, **values) -> str:
        return self.template.format(**values)

    def data(self, **values) -> dict[str, Any]:
        return {key: values[key] for key in self.data_keys}

    def message_sql(self, **expressions: str) -> str:
        return text_sql(self.template, **expressions)

    def data_sql(self, **expressions: str) -> str:
        return jsonb_object_sql({key: expressions[key] for key in self.data_keys})


def resolve_duplicates(*, report: BugReport, actor: str) -> int:
    """Open duplicates follow their canonical into `resolved`."""
    count = 0
    open_duplicates = report.duplicates.select_for_update().exclude(status__in=DONE_STATUSES)
    for duplicate in open_duplicates:
        save_changes(
            duplicate, {"status": Status.RESOLVED, "resolved_at": timezone.now(), **NO_CLAIM}
        )
        write_event(
            report=duplicate,
            kind=EventKind.RESOLVED,
            actor=actor,
            message=f"Resolved with its canonical report {report.pk}.",
            data={"canonical": str(report.pk)},
        )
        count += 1
    return count
