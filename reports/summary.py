"""The human glance at the tracker: what `bugstatus --json` prints and the summary API returns.

Counts take every report, duplicates included (`canonical` and `duplicates` split them);
`open_incidents` counts open canonical reports only, and the backlog alert on size uses it
(one error storm is one incident, however many duplicates it brings). The whole object costs
a constant number of queries, whatever the number of reports.
"""

from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from dedup.models import DedupGroup

from .models import DONE_STATUSES, OPEN_STATUSES, BugReport, Severity, Status

TOP_GROUPS = 5
# An incident: an open canonical report (its duplicates are occurrences of the same bug).
OPEN_INCIDENT = Q(status__in=OPEN_STATUSES, duplicate_of__isnull=True)


def report_summary(*, now: datetime | None = None, top_groups: int = TOP_GROUPS) -> dict:
    """Counts by status and severity, open/done, SLA breaches, oldest open, top groups, alerts."""
    now = now or timezone.now()
    matrix = {status: dict.fromkeys(Severity.values, 0) for status in Status.values}
    for row in BugReport.objects.order_by().values("status", "severity").annotate(n=Count("id")):
        if row["status"] in matrix and row["severity"] in matrix[row["status"]]:
            matrix[row["status"]][row["severity"]] = row["n"]
    totals = BugReport.objects.aggregate(
        sla_breached=Count("id", filter=Q(status__in=OPEN_STATUSES, sla_due_at__lt=now)),
        duplicates=Count("id", filter=Q(duplicate_of__isnull=False)),
        open_incidents=Count("id", filter=OPEN_INCIDENT),
        oldest_open_at=Min("created_at", filter=Q(status__in=OPEN_STATUSES)),
        claims_live=Count("id", filter=Q(claim_holder__isnull=False, claim_expires_at__gt=now)),
    )
    by_status = {status: sum(row.values()) for status, row in matrix.items()}
    by_severity = {sev: sum(matrix[status][sev] for status in matrix) for sev in Severity.values}
    total = sum(by_status.values())
    open_count = sum(by_status[s] for s in OPEN_STATUSES)
    oldest_open_at = totals["oldest_open_at"]
    oldest_age = (now - oldest_open_at).total_seconds() if oldest_open_at else None
    return {
        "generated_at": now.isoformat(),
        "total": total,
        "open": open_count,
        "done": sum(by_status[s] for s in DONE_STATUSES),
        "by_status": by_status,
        "by_severity": by_severity,
        "by_status_severity": matrix,
        "sla_breached": totals["sla_breached"],
        "canonical": total - totals["duplicates"],
        "duplicates": totals["duplicates"],
        "open_incidents": totals["open_incidents"],
        "oldest_open_at": oldest_open_at.isoformat() if oldest_open_at else None,
        "oldest_open_age_seconds": round(oldest_age) if oldest_age is not None else None,
        "claims_live": totals["claims_live"],
        "top_groups": _top_groups(top_groups),
        "backlog_alerts": backlog_alerts(
            open_incidents=totals["open_incidents"],
            open_count=open_count,
            oldest_open_age_seconds=oldest_age,
        ),
    }


def _top_groups(limit: int) -> list[dict]:
    groups = (
        DedupGroup.objects.filter(occurrences__gt=1)
        .select_related("canonical")
        .order_by("-occurrences", "-last_seen", "id")[:limit]
    )
    return [
        {
            "id": str(group.id),
            "fingerprint": group.fingerprint,
            "occurrences": group.occurrences,
            "canonical": str(group.canonical_id),
            "title": group.canonical.title,
            "status": group.canonical.status,
            "first_seen": group.first_seen.isoformat(),
            "last_seen": group.last_seen.isoformat(),
        }
        for group in groups
    ]


def backlog_state() -> dict:
    """What the backlog alerts look at, in one query: open incidents, open reports (with
    duplicates) and the age of the oldest open report."""
    row = BugReport.objects.aggregate(
        open_incidents=Count("id", filter=OPEN_INCIDENT),
        open=Count("id", filter=Q(status__in=OPEN_STATUSES)),
        oldest=Min("created_at", filter=Q(status__in=OPEN_STATUSES)),
    )
    oldest = row["oldest"]
    return {
        "open_incidents": row["open_incidents"],
        "open": row["open"],
        "oldest_open_age_seconds": (
            round((timezone.now() - oldest).total_seconds()) if oldest else None
        ),
    }


def backlog_alerts(
    *,
    open_incidents: int | None = None,
    open_count: int | None = None,
    oldest_open_age_seconds: float | None = None,
) -> list[str]:
    """Human-readable alerts when the open backlog is too large or too old; [] when healthy.

    Too large: more open incidents (canonical reports) than BACKLOG_ALERT_MAX_OPEN; duplicates
    do not count. Called with the numbers when the caller has them already (report_summary),
    or bare (the worker, the admin status, `bugstatus --check`): then one query.
    """
    return list(
        backlog_alert_kinds(
            open_incidents=open_incidents,
            open_count=open_count,
            oldest_open_age_seconds=oldest_open_age_seconds,
        ).values()
    )


def backlog_alert_kinds(
    *,
    open_incidents: int | None = None,
    open_count: int | None = None,
    oldest_open_age_seconds: float | None = None,
) -> dict[str, str]:
    """The backlog alerts firing now by kind (`max_open`, `max_age`), each with its message:
    what backlog_alerts() lists, and what the webhooks tell once per crossing."""
    if open_incidents is None:
        state = backlog_state()
        open_incidents, open_count = state["open_incidents"], state["open"]
        oldest_open_age_seconds = state["oldest_open_age_seconds"]
    alerts = {}
    max_open = settings.BACKLOG_ALERT_MAX_OPEN
    if max_open and open_incidents > max_open:
        alerts["max_open"] = (
            f"{open_incidents} open incidents (canonical reports; {open_count} open reports "
            f"with their duplicates), more than BACKLOG_ALERT_MAX_OPEN={max_open}."
        )
    max_age_hours = settings.BACKLOG_ALERT_MAX_AGE_HOURS
    if max_age_hours and oldest_open_age_seconds is not None:
        age_hours = oldest_open_age_seconds / 3600
        if age_hours > max_age_hours:
            alerts["max_age"] = (
                f"The oldest open report is {age_hours:.0f} h old, more than "
                f"BACKLOG_ALERT_MAX_AGE_HOURS={max_age_hours:g}."
            )
    return alerts
