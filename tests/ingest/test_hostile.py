"""Hostile envelopes against a live server: each a 4xx problem, nothing stored, memory flat."""

import gzip
import json
import re
import urllib.request
import zlib
from pathlib import Path

import brotli
import pytest

from reports.models import BugReport

from .envelopes import envelope, event_envelope, event_payload

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024**3


def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzipped as one member (about 1 MiB for 1 GiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join([*parts, compressor.flush()])


def worker_pid(server) -> int:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    return int(children.split()[0])


def peak_rss_kib(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def send(server, dsn: str, body: bytes, encoding: str | None = None):
    key, project = re.fullmatch(r"http://([0-9a-f]{32})@[^/]+/(\d+)", dsn).groups()
    headers = {
        "X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={key}",
        "Content-Type": "application/x-sentry-envelope",
    }
    if encoding:
        headers["Content-Encoding"] = encoding
    request = urllib.request.Request(
        f"{server.base}/api/{project}/envelope/", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _event_bytes() -> bytes:
    return json.dumps(event_payload()).encode()


def hostile_bodies():
    good = event_envelope()
    payload = _event_bytes()
    yield "truncated envelope", good[: len(good) // 2], None, 400
    yield (
        "length longer than the payload",
        envelope(({"type": "event", "length": len(payload) + 50}, payload)),
        None,
        400,
    )
    yield (
        "length shorter than the payload",
        envelope(({"type": "event", "length": len(payload) - 7}, payload)),
        None,
        400,
    )
    yield "length not a number", envelope(({"type": "event", "length": "12"}, payload)), None, 400
    yield "truncated gzip", gzip.compress(good)[:-20], "gzip", 400
    yield "1 GiB gzip bomb", gzip_bomb(GIB), "gzip", 413
    yield "brotli bomb", brotli.compress(bytes(512 * 1024 * 1024), quality=5), "br", 413
    yield "10,000 items", envelope(*[({"type": "event"}, payload)] * 10_000), None, 413
    yield (
        "two events",
        envelope(({"type": "event"}, payload), ({"type": "event"}, _event_bytes())),
        None,
        400,
    )
    yield (
        "invalid UTF-8 in the event",
        envelope(({"type": "event"}, payload[:-2] + b'\xff\xfe"}')),
        None,
        400,
    )
    yield (
        "invalid UTF-8 in a header",
        b'{"event_id": "\xff"}\n' + envelope(({"type": "event"}, payload)),
        None,
        400,
    )
    yield "not JSON", b"GET / HTTP/1.1\r\n\r\n", None, 400
    yield "a JSON list as the event", envelope(({"type": "event"}, b"[1, 2]")), None, 400
    yield "empty body", b"", None, 400


def test_hostile_envelopes_are_4xx_nothing_stored_memory_flat(gunicorn_server, dsn):
    pid = worker_pid(gunicorn_server)
    assert send(gunicorn_server, dsn, event_envelope())[0] == 200  # warm: imports, connection
    BugReport.objects.all().delete()
    before = peak_rss_kib(pid)
    for name, body, encoding, status in hostile_bodies():
        answer, content = send(gunicorn_server, dsn, body, encoding)
        assert answer == status, (name, answer, content[:300])
        problem = json.loads(content)
        assert problem["status"] == status and problem["detail"], name
    assert BugReport.objects.count() == 0
    grown_mib = (peak_rss_kib(pid) - before) / 1024
    # The limit is INGEST_MAX_DECOMPRESSED (10 MiB): held once as it grows and once as bytes.
    assert grown_mib < 64, f"peak memory grew {grown_mib:.0f} MiB"
    assert worker_pid(gunicorn_server) == pid  # the same worker lived through it all
