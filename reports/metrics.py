"""The reports' gauges on /metrics, read from the database when scraped.

The numbers are those of `bugstatus --json` (reports.summary.report_summary: one rule, one
place), plus remediation runs by outcome and the remediation workers' queues. Cost per scrape:
the summary's two aggregate queries, one GROUP BY over runs, and a cache read.
"""

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from bugtracker.admin_status import queue_totals, worker_snapshots

from .models import AgentRun, RunOutcome
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
        "bugtracker_backlog_alerts",
        "Backlog alerts firing now (bugstatus --check).",
        len(summary["backlog_alerts"]),
    )


def run_gauges() -> Iterator[Metric]:
    runs = GaugeMetricFamily(
        "bugtracker_agent_runs",
        "Remediation runs by outcome (running: not finished yet), since the start.",
        labels=["outcome"],
    )
    counts = dict.fromkeys([*RunOutcome.values, "running"], 0)
    for row in AgentRun.objects.order_by().values("outcome").annotate(n=Count("id")):
        counts[row["outcome"] or "running"] = row["n"]
    for outcome, count in counts.items():
        runs.add_metric([outcome], count)
    yield runs


def queue_gauges() -> Iterator[Metric]:
    live = [w for w in worker_snapshots().values() if w.get("alive")]
    totals = queue_totals(live)
    yield GaugeMetricFamily(
        "bugtracker_workers_alive", "Remediation workers alive (any process).", len(live)
    )
    yield GaugeMetricFamily(
        "bugtracker_worker_queue_depth",
        "Claimed reports waiting for a runner in the live workers' queues (as GET /api/admin/status).",
        totals["depth"],
    )
    yield GaugeMetricFamily(
        "bugtracker_worker_in_flight",
        "Remediation runs in progress in the live workers.",
        totals["in_flight"],
    )


def collect() -> Iterator[Metric]:
    yield from report_gauges()
    yield from run_gauges()
    yield from queue_gauges()
