"""Commit lock: what a per-transaction NOTIFY (or any lock held through commit) costs writers.

8 threads, each on its own connection, run one-INSERT transactions into a scratch table,
with and without `pg_notify` in each transaction, alternately 3 times. PostgreSQL takes a
global lock for NOTIFY at commit and holds it through the WAL flush, so notifying
transactions commit one at a time; an outbox sequence assigned under a lock at commit would
do the same. This is why the changes feed orders by transaction id instead, and why
followers poll (reports/feed.py).

    .venv/bin/python -m benchmarks.commit_lock [--transactions 300]
"""

import argparse
import threading
import time

from .common import Row, django_setup, report_rows

COMMAND = ".venv/bin/python -m benchmarks.commit_lock"


def rate(dsn: str, *, notify: bool, transactions: int, writers: int = 8) -> float:
    import psycopg

    def work():
        with psycopg.connect(dsn) as conn:
            for _ in range(transactions):
                with conn.transaction():
                    conn.execute("INSERT INTO commit_lock_bench (v) VALUES ('x')")
                    if notify:
                        conn.execute("SELECT pg_notify('commit_lock_bench', 'x')")

    threads = [threading.Thread(target=work) for _ in range(writers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return writers * transactions / (time.perf_counter() - began)


def run(*, transactions: int) -> list[Row]:
    import psycopg

    from .common import BENCH_DATABASE_URL, bench_database

    with bench_database():
        with psycopg.connect(BENCH_DATABASE_URL, autocommit=True) as conn:
            conn.execute("CREATE TABLE commit_lock_bench (id bigserial PRIMARY KEY, v text)")
        plain, notified = [], []
        for _ in range(3):
            plain.append(rate(BENCH_DATABASE_URL, notify=False, transactions=transactions))
            notified.append(rate(BENCH_DATABASE_URL, notify=True, transactions=transactions))
        print(f"commit_lock: plain {plain}, notify {notified}")
    return [
        Row(
            "commit_lock",
            "transactions/s, 8 writers, a NOTIFY in each",
            max(notified),
            "/s",
            baseline=max(plain),
            baseline_name="no NOTIFY",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=300, help="per writer per run")
    args = parser.parse_args()
    django_setup()
    report_rows(
        run(transactions=args.transactions), f"{COMMAND} --transactions {args.transactions}"
    )


if __name__ == "__main__":
    main()
