"""Which report events become which webhook events: one table, and the listener that writes
their outbox rows with the event (reports.event_hooks)."""

from __future__ import annotations

from collections.abc import Callable

from reports.event_hooks import ReportEvent, Statement
from reports.models import EventKind, Status

from . import outbox
from .models import EventType


def _canonical(event: ReportEvent) -> bool:
    """Not a duplicate (a duplicate is another occurrence, not a new report). Where the
    duplicate link is decided inside the statement itself, it is a duplicate."""
    return event.report.duplicate_of_id is None and "duplicate_of_id" not in event.decided_in_sql


def _own_resolution(event: ReportEvent) -> bool:
    """The report's own resolution, not a duplicate following its canonical."""
    return "canonical" not in event.data


def _resolved_by_hand(event: ReportEvent) -> bool:
    """A status change to `resolved` (PATCH) of a canonical report."""
    return event.data.get("to") == Status.RESOLVED and event.report.duplicate_of_id is None


# report event kind -> (webhook event type, when; None: always)
WEBHOOK_TYPE_FOR_KIND: dict[str, tuple[str, Callable[[ReportEvent], bool] | None]] = {
    EventKind.CREATED: (EventType.REPORT_CREATED, _canonical),
    EventKind.REGRESSED: (EventType.REPORT_REGRESSED, None),
    EventKind.CLAIMED: (EventType.REPORT_CLAIMED, None),
    EventKind.RELEASED: (EventType.REPORT_RELEASED, None),
    EventKind.RESOLVED: (EventType.REPORT_RESOLVED, _own_resolution),
    EventKind.STATUS_CHANGED: (EventType.REPORT_RESOLVED, _resolved_by_hand),
    EventKind.AUTOMATION_DISABLED: (EventType.AUTOMATION_DISABLED, None),
    # Kinds written once verification and needs-human land (issue 15's lifecycle).
    "verified": (EventType.REPORT_VERIFIED, None),
    "needs_human": (EventType.REPORT_NEEDS_HUMAN, None),
}


class WebhookOutbox:
    """Writes a delivery row per subscribed webhook with each mapped report event."""

    def statements(self, event: ReportEvent, *, source: str = "") -> list[Statement]:
        entry = WEBHOOK_TYPE_FOR_KIND.get(event.kind)
        if entry is None:
            return []
        event_type, when = entry
        if when is not None and not when(event):
            return []
        outbox.wake_on_commit()
        sql = outbox.insert_sql(event_type=event_type, source=source)
        params = outbox.insert_params(
            event_type=event_type, report_id=event.report.pk, event_at=event.created_at
        )
        return [(sql, params)]

    def statements_reading(
        self, *, kind: str, source: str, report_id_sql: str, created_at_sql: str
    ) -> list[Statement]:
        entry = WEBHOOK_TYPE_FOR_KIND.get(kind)
        if entry is None:
            return []
        event_type, when = entry
        if when is not None:
            raise ValueError(f"{kind} events are told only with the report in hand.")
        outbox.wake_on_commit()
        sql = outbox.insert_sql(
            event_type=event_type,
            report_id_sql=report_id_sql,
            event_at_sql=created_at_sql,
            source=source,
        )
        params = outbox.insert_params(
            event_type=event_type, with_report_id=False, with_event_at=False
        )
        return [(sql, params)]


listener = WebhookOutbox()
