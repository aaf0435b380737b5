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


def compact_report(report_id) -> dict | None:
    """The report as the API's compact view shows it now; None when it is gone."""
    from reports.selectors import report_list  # reports' API modules load after the apps
    from reports.serializers import BugReportSerializer

    report = report_list().select_related("dedup_group").filter(pk=report_id).first()
    if report is None:
        return None
    full = BugReportSerializer(report, context={"now": timezone.now()}).data
    shown = {name: full[name] for name in COMPACT_FIELDS}
    shown["repo_hints"] = list(shown["repo_hints"])[:COMPACT_REPO_HINTS]
    return shown


def envelope(*, event_type: str, event_at: datetime, data: dict) -> dict:
    return {"type": event_type, "timestamp": event_at.isoformat(), "data": data}


def report_event_body(*, event_type: str, event_at: datetime, report_id) -> dict:
    return envelope(
        event_type=event_type,
        event_at=event_at,
        data={"report": compact_report(report_id) or {"id": str(report_id)}},
    )
