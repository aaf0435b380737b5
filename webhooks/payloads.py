"""What a delivery's body says: `{"type", "timestamp", "data": {...}}`, the report in the
API's compact view (reports.serializers.REPORT_VIEWS["compact"]) for report events."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def compact_reports(report_ids) -> dict:
    """The reports as the API's `view=compact` shows them now, by id (one query)."""
    from reports.selectors import report_list  # reports' API modules load after the apps
    from reports.serializers import COMPACT_FIELDS, REPORT_VIEWS, report_columns

    compact = REPORT_VIEWS["compact"]
    context = {"now": timezone.now()}
    # Only the view's columns, as the list loads them (no descriptions or telemetry blobs).
    rows = (
        report_list()
        .filter(pk__in=list(report_ids))
        .only(*report_columns(COMPACT_FIELDS))
        .order_by()
    )
    return {report.pk: compact(report, context=context).data for report in rows}


def envelope(*, event_type: str, event_at: datetime, data: dict) -> dict:
    return {"type": event_type, "timestamp": event_at.isoformat(), "data": data}


def report_event_body(
    *, event_type: str, event_at: datetime, report_id, report: dict | None
) -> dict:
    """`report`: its compact view (None when the report is gone: then only its id)."""
    return envelope(
        event_type=event_type, event_at=event_at, data={"report": report or {"id": str(report_id)}}
    )
