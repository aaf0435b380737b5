"""Reads of remediation's runs that other apps receive without importing remediation."""

from .models import AgentRun


def recent_runs(report_id, limit: int) -> list[AgentRun]:
    """A report's latest `limit` runs, newest first (the context bundle's `attempts`)."""
    return list(AgentRun.objects.filter(report_id=report_id).order_by("-started_at", "-id")[:limit])
