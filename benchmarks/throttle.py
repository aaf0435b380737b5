"""What counting requests in the database costs, next to counting them in process memory.

    .venv/bin/python benchmarks/throttle.py                     # PostgreSQL (bt_throttle_bench)
    .venv/bin/python benchmarks/throttle.py --database sqlite   # a temporary SQLite file
    .venv/bin/python benchmarks/throttle.py --requests 3000 --rounds 5

Without a shared cache (Redis, Memcached), throttles count in the database (one upsert per
request on the caller's window row) so that several gunicorn workers share one count. The
baseline is the same request counted in a per-process locmem cache (what the default did
before: cheap, but each worker counted alone). Requests are an agent's `GET
/api/bug-reports/{id}` through the whole Django stack in-process (middleware, key auth,
throttle, view, renderer), the modes interleaved in chunks of 100 (same load) and the best
round counts. With CACHE_URL=redis://… a third row measures the Redis counter.
Target: the database counter >= 0.8x the per-process one.
"""

import argparse
import os
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

CHUNK = 100


def rates(*, requests: int, rounds: int) -> dict[str, float]:
    from django.core.cache.backends.locmem import LocMemCache
    from django.test import Client

    from benchmarks.common import api_key
    from bugtracker import throttling
    from reports.services import report_create

    key = api_key("throttle-bench", "agent")
    report = report_create(actor="bench", data={"title": "Throttle benchmark", "source": "user"})
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    url = f"/api/bug-reports/{report.pk}"
    counters = {
        "database": throttling.DatabaseCounter(),
        "per-process cache": throttling.CacheCounter(LocMemCache("bench", {})),
    }
    if os.environ.get("CACHE_URL", "").startswith("redis"):
        from django.core.cache import caches

        counters["redis"] = throttling.CacheCounter(caches["default"])
    original = throttling.counter
    best = dict.fromkeys(counters, 0.0)
    try:
        for _ in range(rounds):
            seconds = dict.fromkeys(counters, 0.0)
            for _ in range(requests // CHUNK):
                for name, counter in counters.items():
                    throttling.counter = lambda counter=counter: counter
                    started = time.perf_counter()
                    for _ in range(CHUNK):
                        assert client.get(url).status_code == 200
                    seconds[name] += time.perf_counter() - started
            done = (requests // CHUNK) * CHUNK
            for name in counters:
                best[name] = max(best[name], done / seconds[name])
    finally:
        throttling.counter = original
    return best


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=DATABASE_KINDS, default="postgres")
    parser.add_argument("--requests", type=int, default=2000, help="requests per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    django_setup(args.database, name="bt_throttle_bench")
    with bench_database():
        print(machine(), file=sys.stderr)
        best = rates(requests=args.requests, rounds=args.rounds)
    baseline = best["per-process cache"]
    rows = [
        Row(
            "throttle",
            f"GET one report, counted in the database ({args.database})",
            best["database"],
            "req/s",
            baseline=baseline,
            baseline_name="per-process cache",
            target=">= 0.8x",
            met=best["database"] >= 0.8 * baseline,
        )
    ]
    if "redis" in best:
        rows.append(
            Row(
                "throttle",
                "GET one report, counted in Redis",
                best["redis"],
                "req/s",
                baseline=baseline,
                baseline_name="per-process cache",
            )
        )
    command = " ".join(
        ["python benchmarks/throttle.py", *(argv if argv is not None else sys.argv[1:])]
    )
    report_rows(rows, command)
    return rows


if __name__ == "__main__":
    main()
