"""The remediation gauges on /metrics, read when scraped: runs by outcome (one GROUP BY) and
the live workers' queues (as GET /api/admin/status shows them: status.py, a cache read)."""

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from .models import AgentRun, RunOutcome
from .status import queue_totals, worker_snapshots


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
    yield from run_gauges()
    yield from queue_gauges()
