"""GET /api/admin/status: is the remediation worker alive, how is its queue, what is alarming.

The numbers come from every worker process: runs from the database, live workers from the
shared cache (`worker.published_workers`), this process's own worker from `startup`.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from bugtracker.permissions import IsAdmin
from bugtracker.schema import problems
from bugtracker.work_queue import percentile
from reports.summary import backlog_alerts

from .models import AgentRun
from .startup import process_worker
from .worker import published_workers

RUN_WINDOW = 500
QUEUE_COUNTS = ("depth", "in_flight", "processed", "failed")
RUN_WINDOW_HOURS = 24


def run_statistics() -> dict:
    """Remediation runs of the last day, from the database (every worker process's)."""
    since = timezone.now() - timedelta(hours=RUN_WINDOW_HOURS)
    recent = AgentRun.objects.filter(started_at__gte=since)
    by_outcome = {outcome: 0 for outcome in ("succeeded", "failed", "timed_out", "crashed")}
    running = 0
    for outcome in recent.values_list("outcome", flat=True):
        if outcome is None:
            running += 1
        else:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
    finished = recent.filter(finished_at__isnull=False).order_by("-finished_at")[:RUN_WINDOW]
    durations = [
        (f - s).total_seconds() for s, f in finished.values_list("started_at", "finished_at")
    ]
    return {
        "window_hours": RUN_WINDOW_HOURS,
        "running": running,
        "by_outcome": by_outcome,
        "duration_p50": percentile(durations, 0.50),
        "duration_p95": percentile(durations, 0.95),
        "duration_sample": len(durations),
    }


def worker_snapshots() -> dict[str, dict]:
    """Every worker's status by holder: this process's own, and those others publish."""
    local = process_worker()
    workers = {w["holder"]: w for w in published_workers()}
    if local is not None:
        workers[local.holder] = local.snapshot()
    return workers


def queue_totals(live_workers: list[dict]) -> dict[str, int]:
    """The live workers' in-process queues added up: what the status and /metrics show."""
    queues = [w["queue"] for w in live_workers]
    return {name: sum(q[name] for q in queues) for name in QUEUE_COUNTS}


def status_snapshot() -> dict:
    local = process_worker()
    workers = worker_snapshots()
    live = [w for w in workers.values() if w.get("alive")]
    scans = [w["last_scan_at"] for w in live if w.get("last_scan_at")]
    problems = sorted({w["command_problem"] for w in live if w.get("command_problem")})
    return {
        "worker": {
            "enabled_in_web_processes": settings.BUGTRACKER_WORKER,
            "alive": bool(live),
            "command_problem": " ".join(problems) or None,
            "this_process": local.snapshot() if local is not None else None,
            "processes": sorted(workers.values(), key=lambda w: w["holder"]),
        },
        "queue": queue_totals(live),
        "runs": run_statistics(),
        "last_scan_at": max(scans) if scans else None,
        "backlog_alerts": list(backlog_alerts() or []),
        "thresholds": {
            "max_open": settings.BACKLOG_ALERT_MAX_OPEN,
            "max_age_hours": settings.BACKLOG_ALERT_MAX_AGE_HOURS,
        },
    }


_SECONDS = {"type": "number", "nullable": True}
_COUNT = {"type": "integer", "minimum": 0}
STATUS_SCHEMA = {
    "type": "object",
    "required": ["worker", "queue", "runs", "last_scan_at", "backlog_alerts", "thresholds"],
    "properties": {
        "worker": {
            "type": "object",
            "required": [
                "enabled_in_web_processes",
                "alive",
                "command_problem",
                "this_process",
                "processes",
            ],
            "properties": {
                "enabled_in_web_processes": {"type": "boolean"},
                "alive": {"type": "boolean"},
                "command_problem": {"type": "string", "nullable": True},
                "this_process": {"type": "object", "nullable": True},
                "processes": {"type": "array", "items": {"type": "object"}},
            },
        },
        "queue": {
            "type": "object",
            "properties": {name: _COUNT for name in QUEUE_COUNTS},
        },
        "runs": {
            "type": "object",
            "properties": {
                "window_hours": {"type": "integer"},
                "running": _COUNT,
                "by_outcome": {"type": "object", "additionalProperties": _COUNT},
                "duration_p50": _SECONDS,
                "duration_p95": _SECONDS,
                "duration_sample": _COUNT,
            },
        },
        "last_scan_at": {"type": "string", "format": "date-time", "nullable": True},
        "backlog_alerts": {"type": "array", "items": {"type": "string"}, "nullable": True},
        "thresholds": {
            "type": "object",
            "properties": {"max_open": {"type": "integer"}, "max_age_hours": {"type": "number"}},
        },
    },
}


class AdminStatusView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        summary="Worker and backlog status",
        description=(
            "Admin only. `worker.alive`: a worker (in this process, or any process sharing the "
            "cache) scanned within its last three poll intervals. `worker.command_problem`: why "
            "live workers refuse to run remediations (REMEDIATION_COMMAND missing, not "
            "executable, or it could not start), else null; such a worker claims nothing and "
            "counts no attempt until the command is fixed. `queue` sums the live workers' "
            "in-process queues (depth, in flight, processed, failed since start); `runs` are the "
            "remediation runs of the last day from the database, with duration p50/p95 in "
            "seconds; `backlog_alerts` are those of `bugstatus --check`."
        ),
        responses={
            200: OpenApiResponse(STATUS_SCHEMA, description="Status object."),
            **problems(401, 403),
        },
    )
    def get(self, request):
        return Response(status_snapshot())
