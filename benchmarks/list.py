"""List: latency of the default agent queries over 1,000,000 reports on PostgreSQL.

The reports are generated inside PostgreSQL (INSERT … SELECT over generate_series: a year
of history, most of it done, a third duplicates of a canonical with their dedup groups,
stack traces on some, assignees on the worked ones). Each query then goes through the API
(gunicorn, one client, sequential requests) and its p50/p95 are reported, with EXPLAIN
(ANALYZE) of the list query the API ran, checked for index use.

    .venv/bin/python -m benchmarks.list [--reports 1000000] [--samples 100]
"""

import argparse
import base64
import json
import random
import re
import time
from urllib.parse import urlencode

from .common import Row, django_setup, percentile, report_rows

COMMAND = ".venv/bin/python -m benchmarks.list"
ME = "agent-7"
TARGET_MS = 30.0

GENERATE = """
WITH params AS (SELECT now() AS now)
INSERT INTO bug_reports (
    id, title, description, severity, category, status, source, reporter_id, assignee_id,
    component, route, environment, stack_trace, trace_id, request_id, release_sha, telemetry,
    duplicate_of_id, dedup_group_id, fingerprint, fingerprint_version, automation_enabled,
    attempts, resolution_notes, commit_shas, claim_holder, claim_token_hash, claim_expires_at,
    version, metadata, created_at, updated_at, resolved_at, sla_due_at)
SELECT
    md5('r' || i)::uuid,
    exc || ' in ' || component || ': ' || word || ' ' || (i %% 99991) || ' ' || verb,
    'Reported on ' || route || ' while ' || verb || ' the ' || word || '. '
        || repeat('Steps: open the page, change the quantity, submit. ', 1 + i %% 4),
    severity, (ARRAY['crash', 'error', 'performance'])[1 + i %% 3], status, 'user',
    'reporter-' || (i %% 300),
    CASE WHEN status IN ('in_progress', 'awaiting_verification') OR (status IN ('resolved', 'closed') AND i %% 10 < 7)
         THEN 'agent-' || (i %% 50) END,
    component, route, (ARRAY['production', 'production', 'staging'])[1 + i %% 3],
    CASE WHEN i %% 10 = 0 THEN 'Traceback (most recent call last):' || chr(10)
        || '  File "/srv/app/' || component || '/views.py", line ' || (i %% 800) || ', in handle' || chr(10)
        || '  File "/srv/app/' || component || '/services.py", line ' || (i %% 500) || ', in process' || chr(10)
        || exc || ': ' || word || chr(10) ELSE '' END,
    CASE WHEN i %% 5 <> 0 THEN md5('t' || i) END,
    md5('q' || i),
    substr(md5('rel' || (i / 20000)), 1, 40),
    '{}'::jsonb,
    CASE WHEN is_dup THEN md5('r' || canonical)::uuid END,
    md5('g' || CASE WHEN is_dup THEN canonical ELSE i END)::uuid,
    md5('fp' || CASE WHEN is_dup THEN canonical ELSE i END), 1,
    i %% 20 = 0, 0, '', '[]'::jsonb,
    CASE WHEN status = 'in_progress' THEN 'agent-' || (i %% 50) END,
    CASE WHEN status = 'in_progress' THEN md5('c' || i) END,
    CASE WHEN status = 'in_progress' THEN created + interval '15 minutes' END,
    1, '{}'::jsonb, created, created,
    CASE WHEN status = 'resolved' THEN created + interval '2 days' END,
    created + (CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 24 WHEN 'medium' THEN 72 ELSE 168 END)
        * interval '1 hour'
FROM (
    SELECT i, created,
        (ARRAY['KeyError', 'ValueError', 'TimeoutError', 'AttributeError', 'IntegrityError',
               'PermissionError', 'ConnectionResetError', 'ZeroDivisionError'])[1 + (i * 7) %% 8] AS exc,
        (ARRAY['checkout', 'billing', 'search', 'auth', 'inventory', 'notifications', 'profile',
               'uploads', 'reports', 'exports'])[1 + (i * 13) %% 10] AS component,
        (ARRAY['order', 'cart', 'invoice', 'token', 'session', 'item', 'price', 'address',
               'coupon', 'refund', 'shipment', 'avatar'])[1 + (i * 17) %% 12] AS word,
        (ARRAY['saving', 'loading', 'exporting', 'paying', 'uploading', 'signing in'])[1 + (i * 19) %% 6] AS verb,
        '/api/' || (ARRAY['orders', 'carts', 'users', 'items'])[1 + i %% 4] || '/' || (i %% 100000) AS route,
        CASE WHEN r1 < 0.03 THEN 'critical' WHEN r1 < 0.18 THEN 'high' WHEN r1 < 0.68 THEN 'medium' ELSE 'low' END AS severity,
        CASE
            WHEN created > now() - interval '30 days' AND r2 < 0.6 OR r2 < 0.08 THEN
                (ARRAY['new', 'new', 'new', 'new', 'triaged', 'triaged', 'triaged', 'in_progress', 'in_progress', 'awaiting_verification'])[1 + i %% 10]
            ELSE (ARRAY['resolved', 'resolved', 'closed'])[1 + i %% 3]
        END AS status,
        i %% 20 < 7 AND base > 20 AS is_dup,
        base - (base %% 20) + 7 + (i %% 13) AS canonical
    FROM (
        SELECT i, random() AS r1, random() AS r2, random() AS r3,
               now() - (%(count)s - i) * (interval '365 days' / %(count)s) AS created,
               i - 20 * (1 + floor(power(random(), 2) * 2000))::int AS base
        FROM generate_series(1, %(count)s) AS i
    ) AS raw
) AS s
"""

GROUPS = """
INSERT INTO bug_report_dedup (id, fingerprint, algorithm_version, canonical_id, occurrences,
    first_seen, last_seen, inputs, releases_seen, active, created_at)
SELECT r.dedup_group_id, r.fingerprint, 1, r.id, 1 + coalesce(d.n, 0), r.created_at,
       coalesce(d.last, r.created_at), '{}'::jsonb, '[]'::jsonb, true, r.created_at
FROM bug_reports r
LEFT JOIN (SELECT duplicate_of_id, count(*) AS n, max(created_at) AS last
           FROM bug_reports WHERE duplicate_of_id IS NOT NULL GROUP BY duplicate_of_id) d
       ON d.duplicate_of_id = r.id
WHERE r.duplicate_of_id IS NULL
"""


def generate(count: int, *, bulk_load: bool = True) -> float:
    """`count` reports (35% duplicates) with their groups; returns seconds taken.

    `bulk_load` drops the secondary indexes first and rebuilds them after, as a restore
    does, and vacuums (outside a transaction); without it (tests) rows go in as they are.
    """
    from django.db import connection, transaction

    began = time.perf_counter()
    indexes = []
    with connection.cursor() as cursor:
        # A million rows in one statement, and their indexes, outlast a request's
        # statement_timeout (bugtracker/settings.py); RESET at the end restores it.
        cursor.execute("SET statement_timeout = 0")
    with transaction.atomic(), connection.cursor() as cursor:
        if bulk_load:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'bug_reports' "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
            indexes = cursor.fetchall()
            for name, _definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        # Nobody waits for work yet: no claim-next wake-up per generated row.
        cursor.execute("ALTER TABLE bug_reports DISABLE TRIGGER bug_reports_claimable_notify")
        cursor.execute(GENERATE, {"count": count})
        cursor.execute(GROUPS)
        if not bulk_load:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            # What autovacuum would do: merge the GIN pending lists (the planner prices
            # trigram lookups by them) and gather statistics.
            cursor.execute(
                "SELECT gin_clean_pending_list(indexrelid) FROM pg_index "
                "WHERE indexrelid::regclass::text LIKE 'bug_reports_%_trgm_idx'"
            )
            cursor.execute("ANALYZE bug_reports")
            cursor.execute("ANALYZE bug_report_dedup")
    with connection.cursor() as cursor:  # after the commit: no pending FK checks
        cursor.execute("ALTER TABLE bug_reports ENABLE TRIGGER bug_reports_claimable_notify")
    if bulk_load:
        with connection.cursor() as cursor:  # after the commit: no pending FK checks
            cursor.execute("SET maintenance_work_mem = '512MB'")
            for _name, definition in indexes:
                cursor.execute(definition)
            cursor.execute("RESET maintenance_work_mem")
            cursor.execute("VACUUM ANALYZE bug_reports")
            cursor.execute("VACUUM ANALYZE bug_report_dedup")
    with connection.cursor() as cursor:
        cursor.execute("RESET statement_timeout")
    return time.perf_counter() - began


def _cursor_at(depth: int, open_only: bool = True) -> str:
    """The `next` cursor of a priority-ordered page ending `depth` rows deep."""
    from django.db import connection

    where = "duplicate_of_id IS NULL"
    if open_only:
        where += " AND status IN ('new', 'triaged', 'in_progress', 'awaiting_verification')"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT severity_rank, sla_due_at, created_at, id FROM bug_reports WHERE {where} "
            "ORDER BY severity_rank, sla_due_at, created_at, id OFFSET %s LIMIT 1",
            [depth],
        )
        row = cursor.fetchone()
    from bugtracker.pagination import KeysetPagination

    return KeysetPagination().encode_cursor(list(row), reverse=False)


def queries(rng: random.Random, total_open: int) -> dict:
    """Each default agent query: a function giving the next query string to ask."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT trace_id FROM bug_reports TABLESAMPLE SYSTEM (1) WHERE trace_id IS NOT NULL LIMIT 500"
        )
        traces = [r[0] for r in cursor.fetchall()]
    words = ["refund", "avatar", "shipment", "coupon", "invoice", "TimeoutError"]
    depths = [d for d in (1_000, 10_000, 50_000, 100_000, 200_000) if d < total_open]
    cursors = [_cursor_at(d) for d in depths] or [None]
    return {
        "status=open by priority": lambda: {"status": "open"},
        "assigned_to=me": lambda: {"assigned_to": "me"},
        "trace_id=": lambda: {"trace_id": rng.choice(traces)},
        "sla_breached=true": lambda: {"sla_breached": "true"},
        "q= text search": lambda: {
            "q": rng.choice(
                [*words, f"{rng.choice(['cart', 'order', 'token'])} {rng.randint(1, 99990)}"]
            )
        },
        "deep cursor pages": lambda: {"status": "open", "cursor": rng.choice(cursors)},
    }


def explain(path: str, key_name: str) -> tuple[str, bool, float]:
    """EXPLAIN ANALYZE of the list query the API runs for `path`; (plan, uses index, ms)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from bugtracker.models import ApiKey

    client = APIClient()
    client.force_authenticate(user=ApiKey.objects.get(name=key_name))
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    sql = next(q["sql"] for q in captured.captured_queries if 'FROM "bug_reports"' in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    outer = plan.split("SubPlan")[0]
    seq_scan = re.search(r"Seq Scan on bug_reports\b", outer) is not None
    uses_index = "Index" in outer and not seq_scan
    ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
    return plan, uses_index, ms


def run(*, reports: int = 1_000_000, samples: int = 100, workers: int = 2, threads: int = 4):
    from django.db import connection

    from .common import api_key, bench_database, gunicorn, http_load

    rows: list[Row] = []
    with bench_database():
        key = api_key(ME, "agent")
        seconds = generate(reports)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE duplicate_of_id IS NULL AND status IN "
                "('new', 'triaged', 'in_progress', 'awaiting_verification')), "
                "count(*) FILTER (WHERE duplicate_of_id IS NOT NULL), count(*) FROM bug_reports"
            )
            open_canonical, duplicates, total = cursor.fetchone()
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('bug_reports'))")
            size = cursor.fetchone()[0]
        print(
            f"list: {total:,} reports ({open_canonical:,} open canonical, {duplicates:,} "
            f"duplicates, {size} with indexes) generated in {seconds:.0f}s"
        )
        rng = random.Random(11)
        asks = queries(rng, open_canonical)
        headers = {"Authorization": f"Bearer {key}"}
        plans = []
        with gunicorn(workers=workers, threads=threads) as server:
            for name, ask in asks.items():
                paths = [f"/api/bug-reports?{urlencode(ask())}" for _ in range(samples + 10)]
                requests = [("GET", p, None, headers) for p in paths]
                http_load(port=server.port, requests=requests[:10], clients=1)  # warm
                result = http_load(port=server.port, requests=requests[10:], clients=1)
                if result.ok(200) != samples:
                    raise SystemExit(f"list/{name}: statuses {result.statuses}")
                p50 = percentile(result.latencies, 50) * 1000
                p95 = percentile(result.latencies, 95) * 1000
                plan, uses_index, sql_ms = explain(paths[-1], ME)
                plans.append((name, paths[-1], plan))
                rows.append(
                    Row(
                        "list",
                        f"{name} p95 (p50 {p50:.1f} ms, SQL {sql_ms:.1f} ms, "
                        f"{'index' if uses_index else 'NO INDEX'})",
                        p95,
                        "ms",
                        target=f"<= {TARGET_MS:.0f} ms",
                        met=p95 <= TARGET_MS and uses_index,
                    )
                )
        for name, path, plan in plans:
            print(f"\n-- EXPLAIN ANALYZE: {name}: GET {_readable(path)}\n{plan}")
    return rows


def _readable(path: str) -> str:
    """A path with its cursor decoded, for the EXPLAIN headings."""
    match = re.search(r"cursor=([^&]+)", path)
    if not match:
        return path
    from urllib.parse import unquote

    raw = unquote(match.group(1))
    values = json.loads(base64.urlsafe_b64decode(raw + "=="))["v"]
    return path.replace(match.group(1), f"<{','.join(map(str, values))}>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=100, help="requests per query")
    args = parser.parse_args()
    django_setup()
    rows = run(reports=args.reports, samples=args.samples)
    report_rows(rows, f"{COMMAND} --reports {args.reports} --samples {args.samples}")


if __name__ == "__main__":
    main()
