"""Long-poll: how fast a waiting agent gets new work, and what waiting agents cost the server.

gunicorn (2 workers, the repo's gunicorn.conf.py: GUNICORN_THREADS plus WAIT_SLOTS threads)
on PostgreSQL.

- Wake-up latency: an agent waits (`claim-next` with `wait` and a component of its own); a
  reporter submits a report with that component; the time from the submission's response
  (its commit is before it) to the agent's claim response, `--rounds` times.
- Submissions/s with 64 agents parked in `claim-next` (filters nothing matches) beside the
  same load with none, alternately twice; the better run of each counts. 16 clients submit
  real-shaped reports (benchmarks/ingest.py's generator). Also: submissions/s with the
  NOTIFY trigger disabled (what the wake-ups cost writers), and the workers' memory with and
  without the parked agents.

    .venv/bin/python -m benchmarks.longpoll [--rounds 40] [--reports 1500] [--waiters 64]
"""

import argparse
import http.client
import json
import os
import threading
import time
from pathlib import Path

from .common import Row, django_setup, percentile, report_rows

COMMAND = ".venv/bin/python -m benchmarks.longpoll"


def post(port: int, path: str, body: dict, key: str, timeout: float = 90):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def workers_rss_kib(master_pid: int) -> int:
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(master_pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total


def workers_cpu_seconds(master_pid: int) -> float:
    """CPU time (user + system) the gunicorn workers have used so far."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(master_pid):  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def idle_cpu(master_pid: int, seconds: float = 15.0) -> float:
    """Share of one core the workers use over `seconds` with no requests coming in."""
    before = workers_cpu_seconds(master_pid)
    time.sleep(seconds)
    return (workers_cpu_seconds(master_pid) - before) / seconds


def wake_up_latencies(port: int, agent: str, reporter: str, rounds: int) -> list[float]:
    latencies = []
    for n in range(rounds):
        component = f"wake-{n}"
        got = {}

        def wait(component=component, got=got):
            got["status"], _ = post(
                port, "/api/bug-reports/claim-next", {"wait": 30, "component": component}, agent
            )
            got["at"] = time.monotonic()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)  # parked
        status, _ = post(
            port,
            "/api/bug-reports",
            {"title": f"Wake {component}", "component": component},
            reporter,
        )
        committed = time.monotonic()
        thread.join(40)
        if status != 201 or got.get("status") != 200:
            raise SystemExit(f"longpoll: round {n}: submit {status}, claim {got.get('status')}")
        latencies.append(max(0.0, got["at"] - committed))
    return latencies


class ParkedAgents:
    """`count` agents in claim-next with `wait`, on filters no submission matches, re-asking
    as each wait ends, until stopped."""

    def __init__(self, port: int, keys: list[str]):
        self.port, self.keys = port, keys
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.threads = [threading.Thread(target=self._agent, args=(k,)) for k in keys]

    def _agent(self, key: str) -> None:
        while not self.stop.is_set():
            try:
                status, _ = post(
                    self.port,
                    "/api/bug-reports/claim-next",
                    {"wait": 10, "component": "never-submitted"},
                    key,
                )
            except OSError:
                return
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status != 204:
                time.sleep(1.0)  # Retry-After

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        time.sleep(2.0)  # all parked
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:  # each ends with its current wait
            thread.join(30)


def run(
    *, rounds: int, reports: int, waiters: int, pool: int | None = None, clients: int = 16
) -> list[Row]:
    from django.db import connection

    from .common import api_key, bench_database, gunicorn, http_load, json_body
    from .ingest import make_reports, submission_requests

    rows: list[Row] = []
    with bench_database():
        reporter = api_key("bench-reporter", "reporter")
        agent = api_key("bench-agent", "agent")
        parked_keys = [api_key(f"bench-parked-{i}", "agent") for i in range(waiters)]
        payloads = [json_body(p) for p in make_reports(reports * 7 + 300, seed=11)]
        batches = [payloads[300 + i * reports : 300 + (i + 1) * reports] for i in range(7)]
        extra = {"DB_POOL_MAX": str(pool)} if pool is not None else {}
        with gunicorn(workers=2, threads=4, extra_env=extra) as server:
            port = server.port
            http_load(
                port=port,
                requests=submission_requests("/api/bug-reports", payloads[:300], reporter),
                clients=clients,
            )
            latencies = wake_up_latencies(port, agent, reporter, rounds)

            def submit(batch):
                result = http_load(
                    port=port,
                    requests=submission_requests("/api/bug-reports", batch, reporter),
                    clients=clients,
                )
                if result.ok(201) != len(batch):
                    raise SystemExit(f"longpoll: submissions failed: {result.statuses}")
                return result.rate

            cpu_alone = idle_cpu(server.process.pid)
            with ParkedAgents(port, parked_keys):
                cpu_parked = idle_cpu(server.process.pid)
            alone, beside, rss_alone, rss_beside = [], [], [], []
            parked_statuses: dict[int, int] = {}
            for phase in range(2):
                rss_alone.append(workers_rss_kib(server.process.pid))
                alone.append(submit(batches[2 * phase]))
                with ParkedAgents(port, parked_keys) as parked:
                    rss_beside.append(workers_rss_kib(server.process.pid))
                    beside.append(submit(batches[2 * phase + 1]))
                    parked_statuses.update(parked.statuses)
                print(
                    f"longpoll: phase {phase}: alone {alone[-1]:.1f}/s, beside {waiters} parked {beside[-1]:.1f}/s"
                )
            with connection.cursor() as cursor:
                cursor.execute(
                    "ALTER TABLE bug_reports DISABLE TRIGGER bug_reports_claimable_notify"
                )
            silent = [submit(batches[4]), submit(batches[5])]
            with connection.cursor() as cursor:
                cursor.execute(
                    "ALTER TABLE bug_reports ENABLE TRIGGER bug_reports_claimable_notify"
                )
            notified = submit(batches[6])
        if any(status not in (204,) for status in parked_statuses):
            raise SystemExit(f"longpoll: parked agents answered {parked_statuses}")
        p95 = percentile(latencies, 95)
        rows.append(
            Row(
                "longpoll",
                f"wake-up latency p95 (commit -> claim, 2 workers, {rounds} rounds)",
                p95 * 1000,
                "ms",
                target="<= 1000 ms",
                met=p95 <= 1.0,
            )
        )
        rows.append(Row("longpoll", "wake-up latency p50", percentile(latencies, 50) * 1000, "ms"))
        rows.append(
            Row(
                "longpoll",
                f"submissions/s with {waiters} agents waiting ({clients} clients)",
                max(beside),
                "/s",
                baseline=max(alone),
                baseline_name="none waiting",
                target=">= 0.9x",
                met=max(beside) >= 0.9 * max(alone),
            )
        )
        rows.append(
            Row(
                "longpoll",
                "submissions/s with the NOTIFY trigger",
                max(notified, max(alone)),
                "/s",
                baseline=max(silent),
                baseline_name="trigger disabled",
            )
        )
        rows.append(
            Row(
                "longpoll",
                f"workers' CPU, idle, {waiters} agents parked (% of a core)",
                cpu_parked * 100,
                "%",
                baseline=cpu_alone * 100,
                baseline_name="none parked",
            )
        )
        rows.append(
            Row(
                "longpoll",
                f"workers' RSS with {waiters} agents parked",
                max(rss_beside) / 1024,
                "MiB",
                baseline=max(rss_alone) / 1024,
                baseline_name="none parked",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--reports", type=int, default=1500, help="submissions per measured run")
    parser.add_argument("--waiters", type=int, default=64)
    parser.add_argument(
        "--pool", type=int, default=None, help="DB_POOL_MAX (default: gunicorn.conf.py's; 0: none)"
    )
    args = parser.parse_args()
    django_setup()
    rows = run(rounds=args.rounds, reports=args.reports, waiters=args.waiters, pool=args.pool)
    report_rows(
        rows,
        f"{COMMAND} --rounds {args.rounds} --reports {args.reports} --waiters {args.waiters}"
        + (f" --pool {args.pool}" if args.pool is not None else ""),
    )


if __name__ == "__main__":
    main()
