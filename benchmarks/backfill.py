"""backfill_json throughput and memory, against a parse + bulk_create baseline.

    .venv/bin/python benchmarks/backfill.py                      # 50,000 reports, SQLite + PostgreSQL
    .venv/bin/python benchmarks/backfill.py --databases sqlite --reports 20000 --repeat 3
    .venv/bin/python benchmarks/backfill.py --memory             # also peak RSS at 10k vs 100k
    .venv/bin/python benchmarks/backfill.py --databases '' --memory   # the memory part alone

A corpus of legacy reports is generated in the shapes the old system left behind (one
report per file nested by date, JSON arrays, JSON Lines; BOMs, every timestamp and status
spelling, notes, history, repeated errors so dedup has groups to build). Every measurement
runs in a fresh child process on a fresh, migrated database:

- baseline: read every file, json-parse it, bulk_create bare rows (title, legacy id,
  timestamps) 500 per transaction: the floor any importer pays;
- import:   `manage.py backfill_json` itself: validation, field mapping, events, legacy-id
  uniqueness, checkpoint-free batches of 500, and the grouping pass.

Targets: import >= 0.5x the baseline's reports/s (wall clock, best of --repeat; the CPU
time of the importing process is shown beside it, as the machine's load moves wall-clock
numbers); peak RSS of an import of 100,000 reports within 30 MB of one of 10,000 (memory
must not grow with the corpus). Exit status 1 when a target is missed.
PostgreSQL: --pg-url (default postgres://postgres@127.0.0.1:5432); databases named
bt_backfill_bench_* are created and dropped.
"""

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 500

ERRORS = [
    (
        "ValueError",
        "billing/invoice.py",
        "parse_amount",
        "invalid literal for int() with base 10: 'abc'",
    ),
    ("KeyError", "jobs/builder.py", "build_job", "'template'"),
    ("TimeoutError", "jobs/runner.py", "run_job", "job exceeded 30s"),
    ("PermissionError", "auth/policy.py", "check_access", "user 4000 may not access image 9000"),
    ("ZeroDivisionError", "search/ranking.py", "score", "division by zero"),
    ("AttributeError", "uploads/storage.py", "presign", "'NoneType' object has no attribute 'url'"),
    ("TypeError", "notifications/send.py", "render", "unsupported operand type(s)"),
    ("RuntimeError", "image_gen/pipeline.py", "generate", "CUDA out of memory"),
]
COMPONENTS = ["billing", "auth", "search", "uploads", "notifications", "image-gen", None]
ROUTES = ["/api/checkout", "/login", "/api/search", "/api/upload", "/api/images/{id}", None]
STATUSES = [
    "open",
    "NEW",
    "new",
    "triaged",
    "in-progress",
    "in_progress",
    "claimed",
    "verifying",
    "pending_verification",
    "resolved",
    "Fixed",
    "closed",
    "wontfix",
    "duplicate",
]
SEVERITIES = [
    "critical",
    "HIGH",
    "Medium",
    "low",
    "P0",
    "P1",
    "P2",
    "P3",
    "sev1",
    "sev2",
    "sev4",
    None,
]
START = datetime(2024, 1, 1, tzinfo=UTC)


def _timestamp(rng: random.Random, moment: datetime):
    style = rng.randrange(5)
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == 2:
        return int(moment.timestamp())
    if style == 3:
        return int(moment.timestamp() * 1000)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "+00:00")


def legacy_report(i: int, rng: random.Random) -> dict:
    created = START + timedelta(minutes=7 * i + rng.randrange(7))
    error = rng.randrange(len(ERRORS) + 1)
    report: dict = {
        "id": f"br-{1690000000 + i}-{i:06x}" if i % 2 else str(uuid.UUID(int=rng.getrandbits(128))),
        "title": f"{ERRORS[error % len(ERRORS)][0]} in {ERRORS[error % len(ERRORS)][2]} (report {i})",
        "status": rng.choice(STATUSES),
        "created_at": _timestamp(rng, created),
        "description": f"Seen while using the app. Steps: open page, click run. #{i}",
        "source": rng.choice(["user", "agent", "system"]),
        "component": rng.choice(COMPONENTS),
        "route": rng.choice(ROUTES),
    }
    severity = rng.choice(SEVERITIES)
    if severity:
        report["severity"] = severity
    if error < len(ERRORS):
        exc, path, func, message = ERRORS[error]
        report["stack_trace" if rng.random() < 0.8 else "traceback"] = (
            "Traceback (most recent call last):\n"
            f'  File "/srv/app/server/app.py", line {100 + i % 50}, in dispatch\n'
            "    return handler(request)\n"
            f'  File "/srv/app/server/{path}", line {40 + i % 90}, in {func}\n'
            "    result = compute(payload)\n"
            f'  File "/usr/lib/python3.11/site-packages/lib/core.py", line {500 + i % 40}, in compute\n'
            "    raise err\n"
            f"{exc}: {message}"
        )
    if rng.random() < 0.7:
        report["context"] = {
            "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "release": f"{rng.getrandbits(160):040x}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        }
    if rng.random() < 0.5:
        report["reporter"] = (
            f"user{i % 97}@example.com"
            if rng.random() < 0.7
            else {"id": f"u-{i % 89}", "email": "x@example.com"}
        )
    if rng.random() < 0.5:
        report["notes"] = [
            {
                "at": _timestamp(rng, created + timedelta(hours=n + 1)),
                "author": "alice",
                "text": f"note {n} on {i}",
            }
            for n in range(rng.randrange(1, 4))
        ]
    if rng.random() < 0.4:
        report["history"] = [
            {
                "at": _timestamp(rng, created + timedelta(hours=5)),
                "from": "open",
                "to": report["status"],
                "by": "agent:fixer-1",
            }
        ]
    if rng.random() < 0.4:
        report["agent"] = {
            "attempts": rng.randrange(3),
            "automation_enabled": True,
            "last_error": "runner exited 1",
        }
    if rng.random() < 0.3:
        report["resolution"] = {
            "notes": f"fixed by patch {i}",
            "commit": f"{rng.getrandbits(160):040x}",
        }
    if rng.random() < 0.2:
        report["screenshots"] = [f"uploads/shots/{i}-0.png"]
    return report


def generate_corpus(directory: Path, n: int, seed: int = 7) -> None:
    """n reports: ~40% one per file (by date), ~40% JSON Lines of 1000, ~20% arrays of 500."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    array: list[dict] = []
    chunk = 0

    def flush_lines():
        nonlocal lines, chunk
        (directory / f"export-{chunk:05d}.jsonl").write_text("".join(lines), encoding="utf-8")
        lines, chunk = [], chunk + 1

    def flush_array():
        nonlocal array, chunk
        (directory / f"reports-{chunk:05d}.json").write_text(json.dumps(array), encoding="utf-8")
        array, chunk = [], chunk + 1

    for i in range(n):
        report = legacy_report(i, rng)
        kind = rng.random()
        if kind < 0.4:
            created = START + timedelta(minutes=7 * i)
            target = directory / f"{created:%Y}" / f"{created:%m}" / f"{report['id']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(report, indent=2 if i % 3 else None)
            target.write_text(("\ufeff" if i % 50 == 0 else "") + text, encoding="utf-8")
        elif kind < 0.8:
            lines.append(json.dumps(report) + "\n")
            if len(lines) == 1000:
                flush_lines()
        else:
            array.append(report)
            if len(array) == 500:
                flush_array()
    if lines:
        flush_lines()
    if array:
        flush_array()


# -- child processes: one measurement each, on a fresh database ----------------------------


def child(mode: str, corpus: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bugtracker.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rss_before = _peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "baseline":
        reports = _baseline(Path(corpus))
    else:
        from io import StringIO

        from reports.models import BugReport

        with contextlib.suppress(SystemExit):  # exit status 1 when anything was invalid
            call_command("backfill_json", corpus, stdout=StringIO())
        reports = BugReport.objects.count()
    result = {
        "mode": mode,
        "reports": reports,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_setup_mb": rss_before,
    }
    print(json.dumps(result))


def _baseline(corpus: Path) -> int:
    """Parse every file and bulk_create bare rows: no validation, mapping, events or grouping."""
    from django.db import transaction
    from django.utils import timezone

    from reports.models import BugReport

    now = timezone.now()
    rows: list = []
    total = 0

    def flush():
        nonlocal rows, total
        with transaction.atomic():
            BugReport.objects.bulk_create(rows)
        total += len(rows)
        rows = []

    for path in sorted(corpus.rglob("*.json*")):
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            value = json.loads(text)
            records = value if isinstance(value, list) else [value]
        for record in records:
            rows.append(
                BugReport(
                    title=str(record["title"])[:300],
                    legacy_id=record["id"],
                    created_at=now,
                    updated_at=now,
                    sla_due_at=now,
                )
            )
            if len(rows) >= BATCH:
                flush()
    if rows:
        flush()
    return total


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the parent: corpora, databases, children, the table ------------------------------------


def run_child(mode: str, corpus: Path, database_url: str) -> dict:
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench"),
        DEBUG="0",
        LEGACY_MIRROR_DIR="",
        LOG_LEVEL="WARNING",
    )
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(corpus)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class Database:
    """Fresh databases for the children: SQLite files, or PostgreSQL databases we drop after."""

    def __init__(self, kind: str, workdir: Path, pg_url: str):
        self.kind, self.workdir, self.pg_url = kind, workdir, pg_url.rstrip("/")
        self.counter = 0
        self.created: list[str] = []

    def fresh(self) -> str:
        self.counter += 1
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / f'bench-{self.counter}.sqlite3'}"
        name = f"bt_backfill_bench_{os.getpid()}_{self.counter}"
        self._psql(f"DROP DATABASE IF EXISTS {name}")
        self._psql(f"CREATE DATABASE {name}")
        self.created.append(name)
        return f"{self.pg_url}/{name}"

    def cleanup(self) -> None:
        for name in self.created:
            self._psql(f"DROP DATABASE IF EXISTS {name}")
        self.created = []
        for path in self.workdir.glob("bench-*.sqlite3*"):
            path.unlink()

    def _psql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.pg_url}/postgres", autocommit=True) as conn:
            conn.execute(sql)


def throughput(corpus: Path, n: int, kind: str, db: Database, repeat: int) -> tuple[bool, str]:
    runs: dict[str, list] = {"baseline": [], "import": []}
    try:
        for _ in range(repeat):
            for mode in ("baseline", "import"):  # interleaved: both see the same machine load
                runs[mode].append(run_child(mode, corpus, db.fresh()))
                db.cleanup()
    finally:
        db.cleanup()
    base = min(runs["baseline"], key=lambda r: r["seconds"])
    real = min(runs["import"], key=lambda r: r["seconds"])
    base_rate, real_rate = base["reports"] / base["seconds"], real["reports"] / real["seconds"]
    ratio = real_rate / base_rate
    base_cpu = min(r["cpu_seconds"] for r in runs["baseline"])
    real_cpu = min(r["cpu_seconds"] for r in runs["import"])
    ok = ratio >= 0.5 and real["reports"] == n
    line = (
        f"{kind:<10} {base_rate:>13,.0f} {real_rate:>11,.0f} {ratio:>6.2f}  "
        f"{'ok' if ok else 'BELOW TARGET':<12}  "
        f"[client CPU: {base['reports'] / base_cpu:,.0f} vs {real['reports'] / real_cpu:,.0f} r/s, "
        f"{base_cpu / real_cpu:.2f}]  ({real['reports']} reports in {real['seconds']:.1f}s, "
        f"baseline {base['seconds']:.1f}s)"
    )
    return ok, line


def memory(workdir: Path, sizes: list[int]) -> tuple[bool, list[str]]:
    lines, peaks = [], {}
    for size in sizes:
        corpus = workdir / f"corpus-{size}"
        generate_corpus(corpus, size, seed=size)
        db = Database("sqlite", workdir, "")
        try:
            result = run_child("import", corpus, db.fresh())
        finally:
            db.cleanup()
            shutil.rmtree(corpus, ignore_errors=True)
        peaks[size] = result["peak_rss_mb"]
        lines.append(
            f"memory: {size:>7,} reports: peak RSS {result['peak_rss_mb']:.1f} MB "
            f"(after start-up {result['rss_after_setup_mb']:.1f} MB), {result['seconds']:.1f}s"
        )
    growth = peaks[sizes[-1]] - peaks[sizes[0]]
    ok = abs(growth) <= 30
    lines.append(
        f"memory: {sizes[-1]:,} vs {sizes[0]:,} reports: {growth:+.1f} MB (target within 30 MB) "
        f"{'ok' if ok else 'ABOVE TARGET'}"
    )
    return ok, lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", type=int, default=50_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument(
        "--memory", action="store_true", help="also compare peak RSS at 10k vs 100k"
    )
    parser.add_argument("--memory-sizes", default="10000,100000")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    failures = []
    try:
        kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
        if kinds:
            corpus = workdir / "corpus"
            started = time.perf_counter()
            generate_corpus(corpus, args.reports)
            files = sum(1 for _ in corpus.rglob("*.json*"))
            print(
                f"corpus: {args.reports:,} reports in {files:,} files "
                f"(generated in {time.perf_counter() - started:.1f}s)"
            )
            print(
                f"{'database':<10} {'baseline r/s':>13} {'import r/s':>11} {'ratio':>6}  "
                f"target >= 0.50, best of {args.repeat}"
            )
        for kind in kinds:
            db = Database(kind, workdir, args.pg_url)
            ok, line = throughput(corpus, args.reports, kind, db, args.repeat)
            print(line, flush=True)
            failures += [] if ok else [f"{kind} throughput"]
        if args.memory:
            ok, lines = memory(workdir, [int(s) for s in args.memory_sizes.split(",")])
            print("\n".join(lines))
            failures += [] if ok else ["memory"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        raise SystemExit("below target: " + ", ".join(failures))


if __name__ == "__main__":
    main()
