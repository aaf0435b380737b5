"""Deduplication cost: fingerprinting throughput, and grouped vs ungrouped submission.

    .venv/bin/python benchmarks/dedup.py                        # PostgreSQL (bt_dedup_bench)
    .venv/bin/python benchmarks/dedup.py --database sqlite      # a temporary SQLite file
    .venv/bin/python benchmarks/dedup.py --reports 3000 --rounds 5

1. Fingerprinting a 30-frame Python traceback (20 in-app frames, 10 library and standard
   library frames, a chained cause), on one core:
   - "same bug": one bug's tracebacks with varying line numbers, messages and ids (what a
     bug storm looks like), target >= 20,000/s;
   - "all distinct": every traceback has frames never seen before (nothing cached).
2. Submission through the service layer (`reports.services.report_create`, one transaction
   per report, the created event, SLA) with grouping against the same submissions with
   grouping switched off. The mix is 40 bugs, most submissions being duplicates, with
   releases; target: grouped >= 0.7x ungrouped reports/s. The two are interleaved in
   chunks of 50 submissions (same load, same table sizes) and the best round counts.
"""

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    DATABASE_KINDS,
    Row,
    bench_database,
    django_setup,
    machine,
    report_rows,
)

FRAME = '  File "{path}", line {line}, in {function}\n    {code}\n'
LIBRARY = [
    "/usr/lib/python3.12/site-packages/django/core/handlers/exception.py",
    "/usr/lib/python3.12/site-packages/django/core/handlers/base.py",
    "/usr/lib/python3.12/site-packages/rest_framework/views.py",
    "/usr/lib/python3.12/threading.py",
    "<frozen importlib._bootstrap>",
]


def traceback_text(bug: int, rng: random.Random, *, distinct: bool = False) -> str:
    """A 30-frame chained traceback of bug `bug`; `distinct` makes every function new."""
    salt = f"_{rng.getrandbits(48):x}" if distinct else ""

    def frames(count, offset):
        out = []
        for i in range(count):
            if i % 3 == 2:
                path, function = LIBRARY[i % len(LIBRARY)], f"inner_{i}"
            else:
                path = f"/srv/app/server/module_{bug % 7}/part_{(i + offset) % 9}.py"
                function = f"step_{bug}_{i + offset}{salt}"
            out.append(
                FRAME.format(
                    path=path, line=rng.randint(1, 900), function=function, code="result = call()"
                )
            )
        return "".join(out)

    cause = (
        "Traceback (most recent call last):\n"
        + frames(6, 100)
        + f"KeyError: 'item-{rng.randint(1, 10**6)}'\n"
    )
    return (
        cause
        + "\nDuring handling of the above exception, another exception occurred:\n\n"
        + "Traceback (most recent call last):\n"
        + frames(24, 0)
        + f"app.errors.LookupFailed: no row {rng.randint(1, 10**9)} for user {rng.randint(1, 10**6)}\n"
    )


def fingerprint_rate(*, distinct: bool, count: int, rounds: int) -> float:
    from dedup.fingerprint import _frame_path, _trace_parts, fingerprint_for, template_route

    rng = random.Random(7)
    traces = [traceback_text(3, rng, distinct=distinct) for _ in range(count)]
    best = 0.0
    for _ in range(rounds):
        if distinct:
            _trace_parts.cache_clear()
            _frame_path.cache_clear()
            template_route.cache_clear()
        started = time.perf_counter()
        for trace in traces:
            fingerprint_for(
                title="LookupFailed", stack_trace=trace, component="search", route="/api/x/1"
            )
        best = max(best, count / (time.perf_counter() - started))
    return best


def submissions(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    bugs = 40
    out = []
    for n in range(count):
        bug = min(int(rng.expovariate(1 / 6)), bugs - 1)  # a few hot bugs, a long tail
        out.append(
            {
                "title": f"LookupFailed in step_{bug} (request {n})",
                "description": "Submitted by the dedup benchmark.",
                "severity": rng.choice(["critical", "high", "medium", "low"]),
                "stack_trace": traceback_text(bug, rng),
                "component": f"component-{bug % 5}",
                "route": f"/api/items/{rng.randint(1, 10**6)}",
                "environment": "production",
                "release_sha": f"{rng.randint(1, 3):040x}",
                "trace_id": f"{rng.getrandbits(128):032x}",
                "request_id": f"req-{n}",
            }
        )
    return out


def _no_grouping(*, writes, **kwargs):
    """What report_create gets from dedup when grouping is switched off: its own writes
    (the report's INSERT and `created` event) sent as they are."""
    from dedup.grouping import Grouped

    writes.execute()
    return Grouped(group=None)


def submit_seconds(data: list[dict], *, grouped: bool) -> float:
    from reports import services

    original = services.group_submission
    if not grouped:
        services.group_submission = _no_grouping
    try:
        started = time.perf_counter()
        for fields in data:
            services.report_create(actor="bench", data=dict(fields))
        return time.perf_counter() - started
    finally:
        services.group_submission = original


CHUNK = 50


def service_rates(*, reports: int, rounds: int) -> tuple[float, float]:
    """Reports/s with and without grouping, interleaved in chunks of 50 submissions so that
    both modes see the same machine load and the same database size; the best round counts."""
    from django.db import connection

    from dedup.models import DedupGroup
    from reports.models import BugReport, BugReportEvent

    def clean():
        reports = BugReport._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {reports} SET duplicate_of_id = NULL, dedup_group_id = NULL")
            for model in (BugReportEvent, DedupGroup, BugReport):
                cursor.execute(f"DELETE FROM {model._meta.db_table}")

    submit_seconds(submissions(200, seed=1), grouped=True)
    submit_seconds(submissions(200, seed=2), grouped=False)
    best_grouped = best_plain = 0.0
    for round_ in range(rounds):
        clean()
        grouped_data = submissions(reports, seed=100 + round_)
        plain_data = submissions(reports, seed=200 + round_)
        seconds = {True: 0.0, False: 0.0}
        for index, start in enumerate(range(0, reports, CHUNK)):
            for grouped in (True, False) if index % 2 == 0 else (False, True):
                chunk = (grouped_data if grouped else plain_data)[start : start + CHUNK]
                seconds[grouped] += submit_seconds(chunk, grouped=grouped)
        print(
            f"round {round_}: grouped {reports / seconds[True]:.0f}/s, ungrouped {reports / seconds[False]:.0f}/s, {seconds[False] / seconds[True]:.2f}x",
            file=sys.stderr,
        )
        best_grouped = max(best_grouped, reports / seconds[True])
        best_plain = max(best_plain, reports / seconds[False])
    clean()
    return best_grouped, best_plain


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=DATABASE_KINDS, default="postgres")
    parser.add_argument("--reports", type=int, default=2000, help="submissions per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--fingerprints", type=int, default=20000)
    args = parser.parse_args(argv)

    django_setup(args.database, name="bt_dedup_bench")
    rows = []
    same = fingerprint_rate(distinct=False, count=args.fingerprints, rounds=args.rounds)
    rows.append(
        Row(
            "dedup",
            "fingerprint, 30-frame trace, same bug",
            same,
            "/s",
            target=">= 20,000/s",
            met=same >= 20000,
        )
    )
    distinct = fingerprint_rate(distinct=True, count=args.fingerprints // 4, rounds=args.rounds)
    rows.append(Row("dedup", "fingerprint, 30-frame trace, all distinct", distinct, "/s"))

    with bench_database():
        print(machine(), file=sys.stderr)
        grouped, plain = service_rates(reports=args.reports, rounds=args.rounds)
    rows.append(
        Row(
            "dedup",
            f"grouped submissions ({args.database})",
            grouped,
            "reports/s",
            baseline=plain,
            baseline_name="ungrouped",
            target=">= 0.7x",
            met=grouped >= 0.7 * plain,
        )
    )
    command = " ".join(
        ["python benchmarks/dedup.py", *(argv if argv is not None else sys.argv[1:])]
    )
    report_rows(rows, command)
    return rows


if __name__ == "__main__":
    main()
