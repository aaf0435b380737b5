"""What every benchmark shares: its own PostgreSQL database, a gunicorn to talk to, a load
generator, and one row format for the results table.

The benchmarks never touch anyone's data: they create `bt_bench` (BENCH_DATABASE_URL) on
the local PostgreSQL, and drop it when they finish.
"""

import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bt_bench"
)
SECRET_KEY = "benchmark-only-secret-key"
# The benchmark talks to its own server; throttles would only measure themselves.
UNTHROTTLED = {f"THROTTLE_{role}": "100000000/min" for role in ("REPORTER", "AGENT", "ADMIN")}
# Sentry ingest counts each DSN's requests the same way: a rate no run reaches, still counted.
UNTHROTTLED["INGEST_RATE_PER_KEY"] = "100000000/min"


# What `--database` may name: PostgreSQL (BENCH_DATABASE_URL) or a SQLite file.
DATABASE_KINDS = ("postgres", "sqlite")


def django_setup(database: str = "postgres", *, name: str = "bt_bench") -> None:
    """Point Django at the benchmark database (call before anything imports settings).

    `database`: `postgres`, BENCH_DATABASE_URL or else the database `name` on the local
    server; `sqlite`, the file `<temp dir>/<name>.sqlite3`. bench_database() makes it fresh.
    """
    global BENCH_DATABASE_URL
    if database == "sqlite":
        BENCH_DATABASE_URL = f"sqlite:///{Path(tempfile.gettempdir()) / name}.sqlite3"
    elif "BENCH_DATABASE_URL" not in os.environ:
        BENCH_DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{name}"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
    os.environ.update(UNTHROTTLED)
    os.environ.setdefault("SECRET_KEY", SECRET_KEY)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _maintenance_url() -> tuple[str, str]:
    parts = urlsplit(BENCH_DATABASE_URL)
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(path="/postgres")), name


def _admin(sql: str, params: list | None = None) -> tuple | None:
    """Runs `sql` on the maintenance database; its first row, if any."""
    import psycopg  # only PostgreSQL runs need it (BENCH_DATABASE_URL may be SQLite)

    url, _ = _maintenance_url()
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


@contextmanager
def bench_database(*, reuse: bool = False):
    """A fresh, migrated benchmark database for the duration of the block, dropped after
    (PostgreSQL; or a SQLite file when BENCH_DATABASE_URL is a sqlite: URL).

    `reuse`: a database left by an earlier run is used as it is, and this one is kept too
    (to run two trees' code alternately on the same data). Yields whether it was reused.
    """
    from django.core.management import call_command
    from django.db import connections

    keep = reuse or bool(os.environ.get("BENCH_KEEP_DATABASE"))
    connections.close_all()
    if BENCH_DATABASE_URL.startswith("sqlite:"):
        # BENCH_DATABASE_URL=sqlite:////tmp/bt_bench.sqlite3: a fresh file, removed after.
        path = Path(urlsplit(BENCH_DATABASE_URL).path)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        reused = reuse and path.exists()
        if not reused:
            for file in files:
                file.unlink(missing_ok=True)
        try:
            call_command("migrate", verbosity=0, interactive=False)
            yield reused
        finally:
            connections.close_all()
            if not keep:
                for file in files:
                    file.unlink(missing_ok=True)
        return
    _, name = _maintenance_url()
    reused = reuse and _admin("SELECT 1 FROM pg_database WHERE datname = %s", [name]) is not None
    if not reused:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}"')
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield reused
    finally:
        connections.close_all()
        if not keep:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def api_key(name: str, role: str) -> str:
    from bugtracker.services import api_key_create

    return api_key_create(name=name, role=role)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def gunicorn(*, workers: int = 2, threads: int = 4, extra_env: dict | None = None):
    """gunicorn with the repo's gunicorn.conf.py on a free port, against the benchmark DB."""
    port = free_port()
    log = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"bench-gunicorn-{port}.log"
    env = {
        **os.environ,
        **UNTHROTTLED,
        "DATABASE_URL": BENCH_DATABASE_URL,
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "BUGTRACKER_WORKER": "0",
        "LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "INFO"),
        **(extra_env or {}),
    }
    binary = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    with log.open("w") as out:
        process = subprocess.Popen(
            [binary, "--config", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not come up in 60 s")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict = field(default_factory=dict)
    latencies: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def ok(self, *codes: int) -> int:
        return sum(n for status, n in self.statuses.items() if status in codes)


class _Shared:
    """One list of requests that several client threads take from."""

    def __init__(self, items):
        self.items = list(items)
        self.counter = itertools.count()  # next() on a count is atomic under the GIL

    def __iter__(self):
        return self

    def __next__(self):
        index = next(self.counter)
        if index >= len(self.items):
            raise StopIteration
        return self.items[index]


def http_load(
    *,
    port: int,
    requests,
    clients: int,
    stop_on=None,
) -> LoadResult:
    """`clients` threads, each on one keep-alive connection, sending `requests` in order.

    `requests` is a list of (method, path, body bytes or None, headers) or, per client, a
    callable client_index -> iterator of them. `stop_on(status)` ends a client early.
    """
    statuses: dict = {}
    latencies: list = []
    lock = threading.Lock()
    shared = None if callable(requests) else _Shared(requests)
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        own = requests(index) if callable(requests) else None
        mine: dict = {}
        lat: list = []
        start.wait()
        while True:
            try:
                method, path, body, headers = next(own if own is not None else shared)
            except StopIteration:
                break
            began = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            lat.append(time.perf_counter() - began)
            mine[response.status] = mine.get(response.status, 0) + 1
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if stop_on is not None and stop_on(response.status):
                break
        conn.close()
        with lock:
            for status, n in mine.items():
                statuses[status] = statuses.get(status, 0) + n
            latencies.extend(lat)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return LoadResult(sum(statuses.values()), seconds, statuses, latencies)


def percentile(values, q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered)) + 0.5) - 1))]


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def json_body(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class Row:
    """One line of the results table: a measurement, its baseline and its target."""

    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline


def table(rows: list[Row]) -> str:
    header = ("benchmark", "metric", "value", "baseline", "ratio", "target", "met")
    lines = []
    for row in rows:
        baseline = f"{row.baseline:,.1f} ({row.baseline_name})" if row.baseline else ""
        lines.append(
            (
                row.benchmark,
                row.metric,
                f"{row.value:,.1f} {row.unit}",
                baseline,
                f"{row.ratio:.2f}x" if row.ratio is not None else "",
                row.target,
                "" if row.met is None else ("yes" if row.met else "NO"),
            )
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [
        " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    ]
    return "\n".join(out)


def machine() -> str:
    """One line naming the machine the numbers came from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        mem = 0
    pg = ""
    try:
        import psycopg

        with psycopg.connect(_maintenance_url()[0], connect_timeout=5) as conn:
            pg = f", PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]}"
    except Exception:  # only a label
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB{pg}, Python {sys.version.split()[0]}, load {load:.2f} at start"


def report_rows(rows: list[Row], command: str) -> None:
    """Print a benchmark's table and how to rerun it; `make bench` also collects the rows."""
    print(table(rows))
    print(f"\nrerun: {command}")
    sys.stdout.flush()
    collect = os.environ.get("BENCH_ROWS_FILE")
    if collect:
        with open(collect, "a") as out:
            for row in rows:
                out.write(json.dumps({**asdict(row), "command": command}) + "\n")
