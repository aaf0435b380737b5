"""Ingest: reports/s fully processed, beside the framework floor in the same server.

N concurrent HTTP clients submit real-shaped reports (stack traces, request context, half
of them occurrences of bugs already seen) to gunicorn on PostgreSQL. Every submission is
grouped, enriched (trace, request and release ids) and evented inside its request, so
once the last response is in, every report is fully processed; the benchmark checks that.
The floor is `POST /bench/floor` (benchmarks/floor.py) in the same server: same stack,
one bare INSERT. Phases alternate floor/ingest twice and the better run of each counts.

Envelope ingest runs in the same phases: real sentry-sdk envelopes (benchmarks/envelopes.py,
captured once, half new bugs, half occurrences of 40 known ones) replayed gzipped to
`POST /api/<project>/envelope/`; each event is checked stored, grouped and evented after.

    .venv/bin/python -m benchmarks.ingest [--reports 4000] [--clients 16] [--workers 2] [--threads 4]
    .venv/bin/python -m benchmarks.ingest --database sqlite   # a SQLite file under /tmp instead
"""

import argparse
import random
import tempfile
import uuid

from .common import Row, django_setup, http_load, percentile, report_rows

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


def _requests(path: str, bodies: list[bytes], key: str):
    for body in bodies:
        trace = uuid.uuid4().hex
        yield (
            "POST",
            path,
            body,
            {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {key}",
                "traceparent": f"00-{trace}-{trace[:16]}-01",
            },
        )


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


def _split(items: list, size: int) -> tuple[list, list, list]:
    return items[:400], items[400 : 400 + size], items[400 + size :]


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
    envelopes = capture(reports * 2 + 400, release=RELEASE)
    with bench_database():
        key = api_key("bench-reporter", "reporter")
        dsn = api_key_create_with_dsn(name="bench-sdk", role="reporter", host="127.0.0.1")[2]
        public_key, project = dsn.removeprefix("http://").split("@")[0], dsn.rsplit("/", 1)[1]
        envelope_path = f"/api/{project}/envelope/"
        payloads = make_reports(reports * 2 + 400)
        bodies = [json_body(p) for p in payloads]
        warm, first, second = _split(bodies, reports)
        env_warm, env_first, env_second = _split(envelopes, reports)
        floor_body = [json_body({"title": p["title"]}) for p in payloads[:reports]]
        extra = {"RELEASE_SHA": RELEASE}
        with gunicorn(workers=workers, threads=threads, extra_env=extra) as server:
            http_load(
                port=server.port, requests=_requests("/bench/floor", warm, key), clients=clients
            )
            http_load(
                port=server.port, requests=_requests("/api/bug-reports", warm, key), clients=clients
            )
            http_load(
                port=server.port,
                requests=_envelope_requests(envelope_path, env_warm, public_key),
                clients=clients,
            )
            floors, ingests, sdk_runs = [], [], []
            for batch, env_batch in ((first, env_first), (second, env_second)):
                floors.append(
                    http_load(
                        port=server.port,
                        requests=_requests("/bench/floor", floor_body, key),
                        clients=clients,
                    )
                )
                ingests.append(
                    http_load(
                        port=server.port,
                        requests=_requests("/api/bug-reports", batch, key),
                        clients=clients,
                    )
                )
                sdk_runs.append(
                    http_load(
                        port=server.port,
                        requests=_envelope_requests(envelope_path, env_batch, public_key),
                        clients=clients,
                    )
                )
        floor = max(floors, key=lambda r: r.rate)
        ingest = max(ingests, key=lambda r: r.rate)
        sdk = max(sdk_runs, key=lambda r: r.rate)
        failed = sum(r.requests - r.ok(201) for r in [*floors, *ingests])
        failed += sum(r.requests - r.ok(200) for r in sdk_runs)
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
        total = len(warm) + len(first) + len(second)
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
        events_duplicates = events.filter(duplicate_of__isnull=False).count()
        sent = len(envelopes)
        print(
            f"envelopes: {sent} sent, {events_processed} grouped+traced+released, "
            f"{events_evented} evented, {events_duplicates} duplicates"
        )
        if events_processed != sent or events_evented != sent:
            raise SystemExit("ingest: some envelope events were not fully processed")
        label = f"{clients} clients, {workers}x{threads} gunicorn"
        name = "ingest" if database == "postgres" else f"ingest-{database}"
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
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    if args.database == "sqlite":
        from . import common

        common.BENCH_DATABASE_URL = f"sqlite:///{tempfile.gettempdir()}/bt_bench.sqlite3"
    django_setup()
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
