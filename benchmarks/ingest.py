"""Ingest: reports/s fully processed, beside the framework floor in the same server.

N concurrent HTTP clients submit real-shaped reports (stack traces, request context, half
of them occurrences of bugs already seen) to gunicorn on PostgreSQL. Every submission is
grouped, enriched (trace, request and release ids) and evented inside its request, so
once the last response is in, every report is fully processed; the benchmark checks that.
The floor is `POST /bench/floor` (benchmarks/floor.py) in the same server: same stack,
one bare INSERT. Phases alternate floor/ingest twice and the better run of each counts.
Submissions with an `Idempotency-Key` on each run in rounds paired with rounds without
(half a `--reports` each, the order flipping); their ratio is over all rounds.

Envelope ingest runs in the same run: real sentry-sdk envelopes (benchmarks/envelopes.py,
captured once, half new bugs, half occurrences of 40 known ones) replayed gzipped to
`POST /api/<project>/envelope/` right after each floor round; each event is checked stored,
grouped and evented after.

    .venv/bin/python -m benchmarks.ingest [--reports 4000] [--clients 16] [--workers 2] [--threads 4]
    .venv/bin/python -m benchmarks.ingest --database sqlite   # a SQLite file under /tmp instead
"""

import argparse
import os
import random
import statistics
import uuid
from pathlib import Path

from .common import DATABASE_KINDS, Row, django_setup, http_load, percentile, report_rows

COMMAND = ".venv/bin/python -m benchmarks.ingest"
RELEASE = "3f2a9c1d7e4b5a6f8091a2b3c4d5e6f708192a3b"

COMPONENTS = ["checkout", "billing", "search", "auth", "inventory", "notifications", "profile"]
EXCEPTIONS = [
    ("KeyError", "'{word}_{n}'"),
    ("ValueError", "invalid literal for int() with base 10: '{word}{n}'"),
    ("AttributeError", "'NoneType' object has no attribute '{word}'"),
    ("TimeoutError", "upstream {word} timed out after {n} ms"),
    ("django.db.utils.IntegrityError", 'duplicate key value violates "{word}_{n}_key"'),
    ("PermissionError", "user {n} may not {word}"),
]
WORDS = ["order", "cart", "invoice", "token", "session", "item", "price", "address", "coupon"]
LIBRARY_FRAMES = [
    ("/usr/local/lib/python3.12/site-packages/django/core/handlers/exception.py", "inner"),
    ("/usr/local/lib/python3.12/site-packages/django/core/handlers/base.py", "_get_response"),
    ("/usr/local/lib/python3.12/site-packages/rest_framework/views.py", "dispatch"),
    ("/usr/local/lib/python3.12/site-packages/rest_framework/mixins.py", "create"),
]


def _bug(rng: random.Random, unique: str | None) -> dict:
    """A bug: its exception, in-app frames and where it happens."""
    component = rng.choice(COMPONENTS)
    exc, message = rng.choice(EXCEPTIONS)
    frames = [
        (f"/srv/app/{component}/{rng.choice(['views', 'services', 'models', 'tasks'])}.py", fn)
        for fn in rng.sample(
            ["handle", "process", "apply_discount", "load", "validate", "render", "charge"], 3
        )
    ]
    if unique:
        frames.append((f"/srv/app/{component}/handlers.py", f"handle_{unique}"))
    return {
        "component": component,
        "route": f"/api/{component}/{{id}}/{rng.choice(WORDS)}s",
        "exc": exc,
        "message": message,
        "frames": frames,
    }


def _stack(rng: random.Random, bug: dict, word: str, n: int) -> str:
    lines = ["Traceback (most recent call last):"]
    for path, fn in [*LIBRARY_FRAMES, *bug["frames"]]:
        lines.append(f'  File "{path}", line {rng.randint(10, 900)}, in {fn}')
        lines.append(f"    result = {fn}(request, *args, **kwargs)")
    lines.append(f"{bug['exc']}: {bug['message'].format(word=word, n=n)}")
    return "\n".join(lines) + "\n"


def make_reports(count: int, *, seed: int = 7, known_bugs: int = 40) -> list[dict]:
    """`count` submissions; every other one is an occurrence of one of `known_bugs` bugs."""
    rng = random.Random(seed)
    known = [_bug(rng, None) for _ in range(known_bugs)]
    reports = []
    for i in range(count):
        bug = rng.choice(known) if i % 2 == 0 else _bug(rng, uuid.uuid4().hex[:12])
        word, n = rng.choice(WORDS), rng.randint(1, 99999)
        route = bug["route"].replace("{id}", str(rng.randint(1, 10**6)))
        stack = _stack(rng, bug, word, n)
        reports.append(
            {
                "title": f"{bug['exc'].rsplit('.', 1)[-1]} in {bug['component']}: "
                + bug["message"].format(word=word, n=n)[:200],
                "description": (
                    f"{rng.choice(['Customer', 'Agent', 'Monitor'])} hit an error on {route} "
                    f"while {rng.choice(['checking out', 'saving', 'loading the page'])}. "
                    + "Steps: open the page, change the quantity, submit. "
                    * rng.randint(1, 4)
                ),
                "severity": rng.choices(
                    ["critical", "high", "medium", "low"], weights=[1, 4, 10, 5]
                )[0],
                "category": rng.choice(["crash", "error", "performance"]),
                "component": bug["component"],
                "route": route,
                "environment": rng.choice(["production", "production", "staging"]),
                "stack_trace": stack,
                "metadata": {"browser": rng.choice(["firefox", "chrome"]), "user": n},
            }
        )
    return reports


def submission_requests(
    path: str, bodies: list[bytes], key: str, *, idempotency_keys: bool = False
):
    for body in bodies:
        trace = uuid.uuid4().hex
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}",
            "traceparent": f"00-{trace}-{trace[:16]}-01",
        }
        if idempotency_keys:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        yield "POST", path, body, headers


def _envelope_requests(path: str, bodies: list[bytes], public_key: str):
    for body in bodies:
        yield (
            "POST",
            path,
            body,
            {
                "Content-Type": "application/x-sentry-envelope",
                "Content-Encoding": "gzip",
                "X-Sentry-Auth": f"Sentry sentry_version=7, sentry_client=sentry.python, "
                f"sentry_key={public_key}",
            },
        )


def _cpu_by_process(server) -> dict[int, float]:
    """CPU seconds so far of gunicorn (master and workers) and of this database's
    PostgreSQL backends, per pid: what a submission costs the machine, which a machine
    shared with other work cannot blur the way it blurs wall-clock rates. Linux /proc."""
    from django.db import connection

    pids = []
    if connection.vendor == "postgresql":  # SQLite's work is inside gunicorn's own
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            pids = [row[0] for row in cursor.fetchall()]
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children")
    pids += [master, *map(int, children.read_text().split())]
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


def run(
    *,
    reports: int = 4000,
    clients: int = 16,
    workers: int = 2,
    threads: int = 4,
    database: str = "postgres",
) -> list[Row]:
    from django.db.models import Count, Q

    from bugtracker.services import api_key_create_with_dsn
    from reports.models import BugReport, BugReportEvent

    from .common import api_key, bench_database, gunicorn, json_body
    from .envelopes import capture

    rows: list[Row] = []
    name = "ingest" if database == "postgres" else f"ingest-{database}"
    envelopes = capture(reports * 2 + 400, release=RELEASE)
    with bench_database():
        key = api_key("bench-reporter", "reporter")
        dsn = api_key_create_with_dsn(name="bench-sdk", role="reporter", host="127.0.0.1")[2]
        public_key, project = dsn.removeprefix("http://").split("@")[0], dsn.rsplit("/", 1)[1]
        envelope_path = f"/api/{project}/envelope/"
        env_warm, env_rest = envelopes[:400], envelopes[400:]
        env_rounds = [env_rest[:reports], env_rest[reports:]]
        payloads = make_reports(reports * 4 + 400)
        bodies = [json_body(p) for p in payloads]
        warm, rest = bodies[:400], bodies[400:]
        # Keyed and plain submissions in adjacent pairs of short rounds, the order flipping
        # each round, so the machine's drift falls on both sides alike.
        size = max(1, reports // 2)
        rounds = [rest[i * size : (i + 1) * size] for i in range(len(rest) // size)]
        floor_body = [json_body({"title": p["title"]}) for p in payloads[:reports]]
        extra = {"RELEASE_SHA": RELEASE}
        with gunicorn(workers=workers, threads=threads, extra_env=extra) as server:
            cpu_ms = {False: [], True: []}  # per submission, for rounds without/with keys

            def load(path, batch, *, measured=False, **kwargs):
                before = _cpu_by_process(server)
                result = http_load(
                    port=server.port,
                    requests=submission_requests(path, batch, key, **kwargs),
                    clients=clients,
                )
                after = _cpu_by_process(server)
                used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
                if measured:
                    keyed = kwargs.get("idempotency_keys", False)
                    cpu_ms[keyed].append(used / result.requests * 1000)
                return result

            def sdk_load(batch):
                return http_load(
                    port=server.port,
                    requests=_envelope_requests(envelope_path, batch, public_key),
                    clients=clients,
                )

            load("/bench/floor", warm)
            sdk_load(env_warm)
            # Both paths warm (the keyed one's statement prepared) before anything counts.
            load("/api/bug-reports", warm[:200])
            load("/api/bug-reports", warm[200:], idempotency_keys=True)
            floors, ingests, keyed, sdk_runs = [], [], [], []
            for pair in range(len(rounds) // 2):
                if pair % 2 == 0:
                    floors.append(load("/bench/floor", floor_body))
                    if env_rounds:  # envelopes right after the floor, as often (twice)
                        sdk_runs.append(sdk_load(env_rounds.pop(0)))
                plain_batch, keyed_batch = rounds[2 * pair], rounds[2 * pair + 1]
                # Every submission of a keyed round carries its own Idempotency-Key.
                for with_keys in (False, True) if pair % 2 == 0 else (True, False):
                    if with_keys:
                        keyed.append(
                            load(
                                "/api/bug-reports",
                                keyed_batch,
                                measured=True,
                                idempotency_keys=True,
                            )
                        )
                    else:
                        ingests.append(load("/api/bug-reports", plain_batch, measured=True))
        floor = max(floors, key=lambda r: r.rate)
        ingest = max(ingests, key=lambda r: r.rate)
        pair_ratios = [k.rate / p.rate for k, p in zip(keyed, ingests, strict=True)]
        plain_rate = sum(r.requests for r in ingests) / sum(r.seconds for r in ingests)
        keyed_rate = sum(r.requests for r in keyed) / sum(r.seconds for r in keyed)
        print(
            "ingest: with/without Idempotency-Key per round pair: "
            + ", ".join(f"{r:.2f}x" for r in pair_ratios)
        )
        plain_cpu, keyed_cpu = (statistics.median(cpu_ms[k]) for k in (False, True))
        print(
            "ingest: CPU ms per submission (gunicorn + PostgreSQL) per round, without keys: "
            + ", ".join(f"{ms:.2f}" for ms in cpu_ms[False])
            + "; with: "
            + ", ".join(f"{ms:.2f}" for ms in cpu_ms[True])
        )
        failed = sum(r.requests - r.ok(201) for r in [*floors, *ingests, *keyed])
        failed += sum(r.requests - r.ok(200) for r in sdk_runs)
        sdk = max(sdk_runs, key=lambda r: r.rate)
        submitted = BugReport.objects.exclude(stack_trace="").exclude(source="system")
        processed = submitted.filter(
            dedup_group__isnull=False,
            trace_id__isnull=False,
            request_id__isnull=False,
            release_sha=RELEASE,
        ).count()
        duplicates = submitted.filter(duplicate_of__isnull=False).count()
        evented = (
            BugReportEvent.objects.filter(report__in=submitted)
            .values("report")
            .annotate(n=Count("id", filter=Q(kind="created")))
            .filter(n=1)
            .count()
        )
        total = len(warm) + sum(len(batch) for batch in rounds)
        print(
            f"ingest: {total} submitted, {processed} grouped+enriched, {evented} evented, "
            f"{duplicates} duplicates, {failed} non-201 responses"
        )
        if processed != total or evented != total or failed:
            raise SystemExit("ingest: some submissions were not fully processed")
        events = BugReport.objects.filter(source="system")
        events_processed = events.filter(
            dedup_group__isnull=False,
            trace_id__isnull=False,
            request_id__isnull=False,
            release_sha=RELEASE,
        ).count()
        events_evented = (
            BugReportEvent.objects.filter(report__in=events)
            .values("report")
            .annotate(n=Count("id", filter=Q(kind="created")))
            .filter(n=1)
            .count()
        )
        sent = len(env_warm) + sum(r.requests for r in sdk_runs)
        print(
            f"envelopes: {sent} sent, {events_processed} grouped+traced+released, "
            f"{events_evented} evented, {events.filter(duplicate_of__isnull=False).count()} "
            "duplicates"
        )
        if events_processed != sent or events_evented != sent:
            raise SystemExit("ingest: some envelope events were not fully processed")
        label = f"{clients} clients, {workers}x{threads} gunicorn"
        rows.append(
            Row(
                name,
                f"reports/s ({label})",
                ingest.rate,
                "/s",
                baseline=floor.rate,
                baseline_name="floor",
                target=">= 0.6x floor",
                met=ingest.rate >= 0.6 * floor.rate,
            )
        )
        rows.append(
            Row(
                name,
                "reports/s, an Idempotency-Key on each (all rounds)",
                keyed_rate,
                "/s",
                baseline=plain_rate,
                baseline_name="no keys",
                target=">= 0.9x no keys",
                met=keyed_rate >= 0.9 * plain_rate,
            )
        )
        rows.append(
            Row(
                name,
                "submissions per CPU second, an Idempotency-Key on each (median round)",
                1000 / keyed_cpu,
                "/s",
                baseline=1000 / plain_cpu,
                baseline_name="no keys",
                target=">= 0.9x no keys",
                met=plain_cpu / keyed_cpu >= 0.9,
            )
        )
        rows.append(
            Row(
                name,
                "reports/s absolute",
                ingest.rate,
                "/s",
                target=">= 500/s",
                met=ingest.rate >= 500,
            )
        )
        rows.append(
            Row(
                name,
                f"envelope events/s ({label})",
                sdk.rate,
                "/s",
                baseline=floor.rate,
                baseline_name="floor",
                target=">= 0.5x floor",
                met=sdk.rate >= 0.5 * floor.rate,
            )
        )
        rows.append(
            Row(
                name,
                "envelope events/s absolute",
                sdk.rate,
                "/s",
                target=">= 600/s",
                met=sdk.rate >= 600,
            )
        )
        rows.append(
            Row(
                name,
                "envelope latency p95",
                percentile(sdk.latencies, 95) * 1000,
                "ms",
                baseline=percentile(floor.latencies, 95) * 1000,
                baseline_name="floor",
            )
        )
        rows.append(
            Row(
                name,
                "submit latency p95",
                percentile(ingest.latencies, 95) * 1000,
                "ms",
                baseline=percentile(floor.latencies, 95) * 1000,
                baseline_name="floor",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=4000, help="submissions per measured run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--database", choices=DATABASE_KINDS, default="postgres")
    args = parser.parse_args()
    django_setup(args.database)
    rows = run(
        reports=args.reports,
        clients=args.clients,
        workers=args.workers,
        threads=args.threads,
        database=args.database,
    )
    report_rows(
        rows,
        f"{COMMAND} --reports {args.reports} --clients {args.clients} "
        f"--workers {args.workers} --threads {args.threads} --database {args.database}",
    )


if __name__ == "__main__":
    main()
