"""What a delivery's body says: `{"type", "timestamp", "data": {...}}`, the report in its
compact view for report events."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

# The compact view of a report (what an agent scanning a list needs).
COMPACT_FIELDS = (
    "id",
    "title",
    "severity",
    "status",
    "component",
    "category",
    "occurrences",
    "claim",
    "sla_due_at",
    "sla_breached",
    "created_at",
    "repo_hints",
)
COMPACT_REPO_HINTS = 3


def compact_reports(report_ids) -> dict:
    """The reports as the API's compact view shows them now, by id (one query)."""
    from reports.selectors import report_list  # reports' API modules load after the apps
    from reports.serializers import BugReportSerializer

    context = {"now": timezone.now()}
    shown = {}
    for report in report_list().filter(pk__in=list(report_ids)).order_by():
        full = BugReportSerializer(report, context=context).data
        compact = {name: full[name] for name in COMPACT_FIELDS}
        compact["repo_hints"] = list(compact["repo_hints"])[:COMPACT_REPO_HINTS]
        shown[report.pk] = compact
    return shown


def envelope(*, event_type: str, event_at: datetime, data: dict) -> dict:
    return {"type": event_type, "timestamp": event_at.isoformat(), "data": data}


def report_event_body(
    *, event_type: str, event_at: datetime, report_id, report: dict | None
) -> dict:
    """`report`: its compact view (None when the report is gone: then only its id)."""
    return envelope(
        event_type=event_type, event_at=event_at, data={"report": report or {"id": str(report_id)}}
    )
