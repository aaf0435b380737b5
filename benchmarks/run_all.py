"""`make bench`: every benchmark in benchmarks/ at a size that fits in ten minutes, one table.

Each benchmark runs in a process of its own (its own Django setup and database) and hands
its rows back through BENCH_ROWS_FILE; its full output is kept in BENCH_LOG_DIR (default
/tmp). A benchmark that produces no numbers is a row saying so, and makes the exit status 1.

    .venv/bin/python -m benchmarks.run_all [--only ingest,claims] [--quick]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import Row, machine, table  # noqa: E402

# Sizes for `make bench` (about ten minutes on 2 cores); `--quick` divides them for a smoke run.
BENCHMARKS = {
    "ingest": ["-m", "benchmarks.ingest", "--reports", "3000"],
    "claims": ["-m", "benchmarks.claims", "--reports", "3000"],
    "list": ["-m", "benchmarks.list", "--reports", "1000000", "--samples", "100"],
    "dedup": ["benchmarks/dedup.py", "--reports", "1000", "--rounds", "3"],
    "backfill": ["benchmarks/backfill.py", "--reports", "20000", "--databases", "postgres"],
    "context": ["-m", "benchmarks.context", "--reports", "1000000", "--samples", "200"],
    "longpoll": ["-m", "benchmarks.longpoll", "--rounds", "40", "--reports", "1500"],
    "commit_lock": ["-m", "benchmarks.commit_lock", "--transactions", "300"],
    "webhooks": ["-m", "benchmarks.webhooks", "--reports", "2000"],
    "throttle": ["benchmarks/throttle.py", "--requests", "2000", "--rounds", "3"],
}
QUICK = {
    "ingest": ["--reports", "300"],
    "claims": ["--reports", "300"],
    "list": ["--reports", "20000", "--samples", "20"],
    "dedup": ["--reports", "200", "--rounds", "1", "--fingerprints", "2000"],
    "backfill": ["--reports", "2000"],
    "context": ["--reports", "20000", "--samples", "30"],
    "longpoll": ["--rounds", "10", "--reports", "200"],
    "commit_lock": ["--transactions", "50"],
    "webhooks": ["--reports", "200"],
    "throttle": ["--requests", "300", "--rounds", "1"],
}
HELPERS = {"__init__", "common", "settings", "urls", "floor", "run_all", "profile", "envelopes"}
# Benchmarks that run a second time on SQLite (`--database sqlite`), as rows of their own.
SQLITE_TOO = {"ingest"}
# backfill.py prints its own table: its lines are read back into rows.
BACKFILL_LINE = re.compile(r"^(sqlite|postgres)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)")


def _with(args: list[str], override: list[str]) -> list[str]:
    args = list(args)
    for flag, value in zip(override[::2], override[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def _backfill_rows(output: str, command: str) -> list[Row]:
    rows = []
    for line in output.splitlines():
        match = BACKFILL_LINE.match(line)
        if match:
            base, real = (float(match.group(i).replace(",", "")) for i in (2, 3))
            rows.append(
                Row(
                    "backfill",
                    f"import reports/s ({match.group(1)})",
                    real,
                    "/s",
                    baseline=base,
                    baseline_name="parse + bulk_create",
                    target=">= 0.5x",
                    met=real >= 0.5 * base,
                )
            )
    return rows


def run_one(name: str, args: list[str], log_dir: Path) -> tuple[list[Row], float, bool]:
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as collected:
        env = {**os.environ, "BENCH_ROWS_FILE": collected.name, "BENCH_LOG_DIR": str(log_dir)}
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - began
        output = done.stdout + done.stderr
        (log_dir / f"bench-{name}.log").write_text(output)
        rows = []
        for line in collected.read().splitlines():
            data = json.loads(line)
            data.pop("command", None)
            rows.append(Row(**data))
    command = " ".join([".venv/bin/python", *args])
    if name == "backfill" and not rows:
        rows = _backfill_rows(output, command)
    # A missed target shows in the `met` column (some scripts also exit 1 for it); a
    # benchmark that produced no numbers at all is a failure.
    ok = bool(rows)
    if not ok:
        tail = output.strip().splitlines()[-1:] or ["no output"]
        rows.append(Row(name, f"FAILED (exit {done.returncode}): {tail[0][:80]}", 0, ""))
    print(f"  {name}: {seconds:.0f}s, rerun: {command}", flush=True)
    return rows, seconds, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma list of benchmarks (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    found = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in HELPERS)
    names = [n for n in found if not args.only or n in args.only.split(",")]
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    print(f"machine: {machine()}", flush=True)
    rows: list[Row] = []
    failed = False
    began = time.perf_counter()
    for name in names:
        command = BENCHMARKS.get(name, [f"benchmarks/{name}.py"])
        if args.quick and name in QUICK:
            command = _with(command, QUICK[name])
        got, _seconds, ok = run_one(name, command, log_dir)
        rows += got
        failed |= not ok
        if name in SQLITE_TOO:
            got, _seconds, ok = run_one(
                f"{name}-sqlite", [*command, "--database", "sqlite"], log_dir
            )
            rows += got
            failed |= not ok
    print()
    print(table(rows))
    print(f"\n{len(names)} benchmarks in {time.perf_counter() - began:.0f}s; logs in {log_dir}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
