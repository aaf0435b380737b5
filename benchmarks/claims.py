"""Claims: claim-next throughput with 16 concurrent agents on PostgreSQL.

Three runs over the same seeded queue, each reset in between:

- baseline: a bare SQL loop, `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`,
  one autocommit statement per claim, one psycopg connection per agent;
- service: `reports.claims.report_claim_next` from 16 agent threads spread over 2
  processes (one Python process only ever uses one core), with lease, status move, event;
- HTTP: `POST /api/bug-reports/claim-next` from 16 clients with their own agent keys,
  against gunicorn.

Each run claims until the queue is empty and checks that every report was claimed exactly
once.

    .venv/bin/python -m benchmarks.claims [--reports 3000] [--agents 16] [--workers 2] [--threads 8] [--processes 2]
"""

import argparse
import threading
import time

from .common import Row, django_setup, report_rows

COMMAND = ".venv/bin/python -m benchmarks.claims"

BARE_CLAIM = """
UPDATE bug_reports
   SET claim_holder = %(agent)s, claim_token_hash = md5(random()::text),
       claim_expires_at = now() + interval '900 seconds', assignee_id = %(agent)s,
       status = 'in_progress', version = version + 1, updated_at = now()
 WHERE id = (
       SELECT id FROM bug_reports
        WHERE status IN ('new', 'triaged', 'in_progress') AND duplicate_of_id IS NULL
          AND (claim_holder IS NULL OR claim_expires_at <= now())
        ORDER BY severity_rank, sla_due_at, created_at, id
        LIMIT 1
          FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def seed(count: int) -> None:
    """A fresh queue of `count` open reports of mixed severity (and nothing else)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from reports.models import BugReport
    from reports.services import report_build

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bug_reports, bug_report_events CASCADE")
    now = timezone.now()
    severities = ["critical", "high", "medium", "low"]
    reports = [
        report_build(
            data={
                "title": f"Queue item {i}",
                "severity": severities[i % 4],
                "status": "new" if i % 3 else "triaged",
            },
            created_at=now - timedelta(seconds=i),
        )
        for i in range(count)
    ]
    BugReport.objects.bulk_create(reports, batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE bug_reports")


def _check_claimed_once(count: int, label: str) -> None:
    from django.db.models import Count

    from reports.models import BugReport

    claimed = BugReport.objects.filter(status="in_progress", claim_holder__isnull=False).count()
    versions = dict(
        BugReport.objects.values_list("version").annotate(n=Count("id")).order_by("version")
    )
    if claimed != count or set(versions) != {2}:
        raise SystemExit(
            f"claims/{label}: {claimed} of {count} claimed, versions {versions}: not exactly once"
        )


def run_bare(count: int, agents: int) -> float:
    import psycopg

    from .common import BENCH_DATABASE_URL

    barrier = threading.Barrier(agents + 1)
    claimed = [0] * agents

    def agent(index: int) -> None:
        with psycopg.connect(BENCH_DATABASE_URL, autocommit=True) as conn:
            name = f"agent-{index}"
            barrier.wait()
            while conn.execute(BARE_CLAIM, {"agent": name}).fetchone():
                claimed[index] += 1

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    assert sum(claimed) == count, claimed
    return count / seconds


def _service_agents(first: int, agents: int, start, results) -> None:
    """One process running `agents` agent threads through the service layer."""
    from django.db import connection

    from reports.claims import report_claim_next

    claimed = [0] * agents
    errors: list = []

    def agent(index: int) -> None:
        try:
            connection.ensure_connection()
            start.wait()
            while report_claim_next(actor=f"agent-{first + index}") is not None:
                claimed[index] += 1
        except Exception as exc:  # reported to the parent
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((sum(claimed), errors))


def run_service(count: int, agents: int, processes: int) -> float:
    """`agents` agents as `processes` processes of threads: one Python process is one core."""
    import multiprocessing

    from django.db import connections

    context = multiprocessing.get_context("fork")
    connections.close_all()  # never share a connection across fork
    start = context.Barrier(agents + 1)
    results = context.Queue()
    per = [agents // processes + (1 if i < agents % processes else 0) for i in range(processes)]
    children = [
        context.Process(target=_service_agents, args=(sum(per[:i]), n, start, results))
        for i, n in enumerate(per)
    ]
    for child in children:
        child.start()
    start.wait()
    began = time.perf_counter()
    outcomes = [results.get() for _ in children]
    seconds = time.perf_counter() - began
    for child in children:
        child.join()
    errors = [e for _, errs in outcomes for e in errs]
    if errors:
        raise SystemExit(f"claims/service: {errors[0]}")
    total = sum(n for n, _ in outcomes)
    assert total == count, outcomes
    return count / seconds


def run_http(count: int, agents: int, port: int, keys: list[str]) -> tuple[float, object]:
    from .common import http_load

    def requests(index: int):
        headers = {"Authorization": f"Bearer {keys[index]}", "Content-Type": "application/json"}
        while True:
            yield ("POST", "/api/bug-reports/claim-next", b"{}", headers)

    result = http_load(port=port, requests=requests, clients=agents, stop_on=lambda s: s != 200)
    claimed = result.ok(200)
    if claimed != count or result.ok(204) != agents:
        raise SystemExit(f"claims/http: {claimed} of {count} claimed, statuses {result.statuses}")
    return claimed / result.seconds, result


def run(
    *, reports: int = 3000, agents: int = 16, workers: int = 2, threads: int = 8, processes: int = 2
) -> list[Row]:
    from .common import api_key, bench_database, gunicorn, percentile

    with bench_database():
        keys = [api_key(f"agent-{i}", "agent") for i in range(agents)]
        seed(reports // 5)  # warm-up: caches, plans, connections
        run_bare(reports // 5, agents)
        seed(reports)
        bare = run_bare(reports, agents)
        _check_claimed_once(reports, "bare")
        seed(reports // 5)
        run_service(reports // 5, agents, processes)
        seed(reports)
        service = run_service(reports, agents, processes)
        _check_claimed_once(reports, "service")
        with gunicorn(workers=workers, threads=threads) as server:
            seed(reports // 5)
            run_http(reports // 5, agents, server.port, keys)
            seed(reports)
            http, result = run_http(reports, agents, server.port, keys)
            _check_claimed_once(reports, "http")
    label = f"{agents} agents"
    return [
        Row(
            "claims",
            f"service claims/s ({label}, {processes} processes)",
            service,
            "/s",
            baseline=bare,
            baseline_name="bare SQL",
            target=">= 0.5x bare",
            met=service >= 0.5 * bare,
        ),
        Row(
            "claims",
            f"HTTP claims/s ({label}, {workers}x{threads} gunicorn)",
            http,
            "/s",
            baseline=bare,
            baseline_name="bare SQL",
            target=">= 300/s",
            met=http >= 300,
        ),
        Row("claims", "HTTP claim-next latency p95", percentile(result.latencies, 95) * 1000, "ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=3000, help="reports in the queue per run")
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument(
        "--processes", type=int, default=2, help="processes the service-layer agents run in"
    )
    args = parser.parse_args()
    django_setup()
    rows = run(
        reports=args.reports,
        agents=args.agents,
        workers=args.workers,
        threads=args.threads,
        processes=args.processes,
    )
    report_rows(
        rows,
        f"{COMMAND} --reports {args.reports} --agents {args.agents} "
        f"--workers {args.workers} --threads {args.threads} --processes {args.processes}",
    )


if __name__ == "__main__":
    main()
