"""The reports' gauges on /metrics, read from the database when scraped.

The numbers are those of `bugstatus --json` (reports.summary.report_summary: one rule, one
place). Cost per scrape: the summary's two aggregate queries and one over claim attempts. The remediation runs and queues
are remediation/metrics.py's.
"""

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from .models import ClaimAttempt
from .summary import report_summary


def report_gauges() -> Iterator[Metric]:
    summary = report_summary(top_groups=0)
    reports = GaugeMetricFamily(
        "bugtracker_reports",
        "Reports by status and severity, duplicates included (bugstatus --json by_status_severity).",
        labels=["status", "severity"],
    )
    for status, row in summary["by_status_severity"].items():
        for severity, count in row.items():
            reports.add_metric([status, severity], count)
    yield reports
    yield GaugeMetricFamily(
        "bugtracker_reports_open", "Open reports (new to awaiting_verification).", summary["open"]
    )
    yield GaugeMetricFamily(
        "bugtracker_open_incidents",
        "Open canonical reports (what BACKLOG_ALERT_MAX_OPEN counts).",
        summary["open_incidents"],
    )
    yield GaugeMetricFamily(
        "bugtracker_reports_sla_breached",
        "Open reports past their SLA due time.",
        summary["sla_breached"],
    )
    age = summary["oldest_open_age_seconds"]
    yield GaugeMetricFamily(
        "bugtracker_oldest_open_report_age_seconds",
        "Age of the oldest open report; 0 when nothing is open.",
        age or 0,
    )
    yield GaugeMetricFamily(
        "bugtracker_claims_live",
        "Reports under a lease that has not expired.",
        summary["claims_live"],
    )
    yield GaugeMetricFamily(
        "bugtracker_reports_needs_human",
        "Open reports waiting for a human (out of claim-next until one clears them).",
        summary["needs_human"],
    )
    yield GaugeMetricFamily(
        "bugtracker_backlog_alerts",
        "Backlog alerts firing now (bugstatus --check).",
        len(summary["backlog_alerts"]),
    )


def attempt_gauges() -> Iterator[Metric]:
    attempts = GaugeMetricFamily(
        "bugtracker_claim_attempts",
        "Claim attempts (agents and the worker) by outcome; `running` are the live ones.",
        labels=["outcome"],
    )
    counted = dict(
        ClaimAttempt.objects.order_by()
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    for outcome in ClaimAttempt._meta.get_field("outcome").choices or []:
        attempts.add_metric([outcome[0]], counted.get(outcome[0], 0))
    yield attempts


def collect() -> Iterator[Metric]:
    yield from report_gauges()
    yield from attempt_gauges()
