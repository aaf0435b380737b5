"""Context bundle: the cost of GET /api/bug-reports/{id}/context on a heavy report.

A table of N reports (benchmarks/list.py's generator: a year of history, a third
duplicates), plus one report as heavy as they come: a 200 KB traceback, 500 notes of 2 KB
and 1,000 duplicates (`--duplicates`) with distinct titles, releases and environments. The bundle at
12,000 characters (json and markdown) is built `--samples` times through the service
(reports.context.context_bundle: every query and the trimming) and over HTTP (gunicorn,
one client); the baseline is the same report's plain detail (GET /api/bug-reports/{id}),
which carries the whole trace, measured alternately in the same run. The bundle's CPU time
in this process is printed too: on a shared, loaded machine the wall time mostly measures the
queue for a core.

    .venv/bin/python -m benchmarks.context [--reports 1000000] [--samples 200]
        [--duplicates 1000] [--reuse]

Old code against new: `--reuse` keeps the generated table for the next run, so the same
command can run from two checkouts in turn (`git worktree add ../before <commit>`) on the
same data.
"""

import argparse
import os
import time

from .common import Row, django_setup, percentile, report_rows

COMMAND = ".venv/bin/python -m benchmarks.context"
TARGET_MS = 30.0
HEAVY_TITLE = "KeyError in billing.invoice.total: 'sku-42' at checkout"


def heavy_report(duplicates: int = 1000):
    """The report: 200 KB trace, 500 notes, `duplicates` duplicates (SQL for the bulk of it);
    the first 1,000 duplicates carry the trace too, the others none (a hot bug's count
    without its gigabytes)."""
    from django.db import connection
    from django.utils import timezone

    from reports.models import BugReport
    from reports.services import report_add_event, report_create

    frame = (
        '  File "/srv/app/billing/invoice.py", line 88, in total\n'
        "    return sum(line.amount for line in self.lines) + total(parent)\n"
    )
    trace = (
        "Traceback (most recent call last):\n"
        + frame * (200 * 1024 // len(frame))
        + '  File "/srv/app/billing/models.py", line 12, in amount\n'
        "    return self.prices[self.sku]\nKeyError: 'sku-42'\n"
    )
    report = report_create(
        actor="bench",
        data={
            "title": HEAVY_TITLE,
            "description": "Checkout fails for customers with a discontinued SKU. " * 50,
            "severity": "high",
            "component": "billing",
            "route": "/api/checkout/{id}",
            "environment": "production",
            "stack_trace": trace,
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "release_sha": "a" * 40,
        },
    )
    report_add_event(report_id=report.pk, kind="note", actor="bench", message="first note")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bug_report_events (report_id, kind, actor, message, data, created_at) "
            "SELECT %s, (ARRAY['note','agent_log','agent_action'])[1 + i %% 3], 'agent-' || i %% 7, "
            "'note ' || i || ': ' || repeat('tried the fixture set again; ', 70), '{}'::jsonb, "
            "%s + i * interval '1 second' FROM generate_series(1, 499) AS i",
            [report.pk, now],
        )
        cursor.execute(
            "INSERT INTO bug_reports (id, title, description, severity, category, status, source, "
            "component, route, environment, stack_trace, release_sha, telemetry, duplicate_of_id, "
            "automation_enabled, attempts, resolution_notes, commit_shas, version, metadata, "
            "created_at, updated_at, sla_due_at) "
            "SELECT md5('dup' || i)::uuid, 'KeyError at checkout for customer ' || i, '', 'high', "
            "NULL, 'new', 'user', 'billing', '/api/checkout/{id}', "
            "(ARRAY['production','staging','canary'])[1 + i %% 3], "
            "CASE WHEN i <= 1000 THEN %s ELSE '' END, "
            "substr(md5('rel' || i %% 12), 1, 40), '{}'::jsonb, %s, false, 0, '', '[]'::jsonb, 1, "
            "'{}'::jsonb, %s - i * interval '1 second', %s, %s "
            "FROM generate_series(1, %s) AS i",
            [trace, report.pk, now, now, now, duplicates],
        )
        # As autovacuum leaves a settled table: counting the duplicates reads only the index.
        cursor.execute("VACUUM ANALYZE bug_reports")
        cursor.execute("ANALYZE bug_report_events")
    assert BugReport.objects.filter(duplicate_of=report).count() == duplicates
    return report


def run(*, reports: int, samples: int, duplicates: int = 1000, reuse: bool = False) -> list[Row]:
    from benchmarks.list import generate
    from reports.context import context_bundle
    from reports.models import BugReport
    from reports.selectors import report_list
    from reports.serializers import BugReportSerializer

    from .common import api_key, bench_database, gunicorn, http_load

    rows: list[Row] = []
    with bench_database(reuse=reuse) as reused:
        if reused:
            report = BugReport.objects.get(title=HEAVY_TITLE)
            print(f"context: the database of an earlier --reuse run, {reports:,} reports")
        else:
            seconds = generate(reports) if reports else 0.0
            print(f"context: {reports:,} reports generated in {seconds:.0f} s")
            report = heavy_report(duplicates)
        key = api_key(f"bench-agent-{os.getpid()}", "agent")  # a reused database has one

        def detail():
            return BugReportSerializer(
                report_list().select_related("dedup_group").get(pk=report.pk)
            ).data

        timings = {"json": [], "markdown": [], "detail": [], "cpu": []}
        sizes = {}
        for _ in range(5):  # warm-up
            context_bundle(report_id=report.pk)
            detail()
        for _ in range(samples):
            for fmt in ("json", "markdown"):
                began, cpu = time.perf_counter(), time.process_time()
                bundle = context_bundle(report_id=report.pk, max_chars=12_000, fmt=fmt)
                timings[fmt].append(time.perf_counter() - began)
                timings["cpu"].append(time.process_time() - cpu)
                sizes[fmt] = len(bundle.body)
            began = time.perf_counter()
            detail()
            timings["detail"].append(time.perf_counter() - began)
        print(f"context: body {sizes['json']:,} chars (json), {sizes['markdown']:,} (markdown)")

        auth = {"Authorization": f"Bearer {key}"}
        path = f"/api/bug-reports/{report.pk}"
        with gunicorn(workers=1, threads=4) as server:

            def load(url):
                return http_load(
                    port=server.port, requests=[("GET", url, None, auth)] * samples, clients=1
                )

            load(f"{path}/context")
            http_context, http_detail = load(f"{path}/context"), load(path)

        table_label = f"{reports:,} reports" if reports else "empty table"
        for fmt in ("json", "markdown"):
            p95 = percentile(timings[fmt], 95) * 1000
            rows.append(
                Row(
                    "context",
                    f"bundle {fmt} p95, 12,000 chars, 500 notes, {duplicates:,} dups, {table_label}",
                    p95,
                    "ms",
                    baseline=percentile(timings["detail"], 95) * 1000,
                    baseline_name="detail read",
                    target=f"<= {TARGET_MS:.0f} ms",
                    met=p95 <= TARGET_MS,
                )
            )
        rows.append(
            Row(
                "context",
                "bundle CPU p95 (this process; the machine's load does not inflate it)",
                percentile(timings["cpu"], 95) * 1000,
                "ms",
            )
        )
        rows.append(
            Row(
                "context",
                "GET .../context p95 over HTTP",
                percentile(http_context.latencies, 95) * 1000,
                "ms",
                baseline=percentile(http_detail.latencies, 95) * 1000,
                baseline_name="GET detail",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1_000_000, help="reports in the table")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--duplicates",
        type=int,
        default=1000,
        help="the heavy report's duplicates (the target is at 1,000; 100,000 is a hot bug)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the generated database (bt_context_<reports>_<duplicates>) and use it again "
        "next time: for running two trees' code alternately on the same data",
    )
    args = parser.parse_args()
    name = f"bt_context_{args.reports}_{args.duplicates}"
    django_setup(name=name if args.reuse else "bt_bench")
    rows = run(
        reports=args.reports, samples=args.samples, duplicates=args.duplicates, reuse=args.reuse
    )
    rerun = f"{COMMAND} --reports {args.reports} --samples {args.samples}"
    if args.duplicates != 1000:
        rerun += f" --duplicates {args.duplicates}"
    report_rows(rows, rerun + (" --reuse" if args.reuse else ""))


if __name__ == "__main__":
    main()
