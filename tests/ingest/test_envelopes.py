"""The ingest endpoints in process: auth, items, encodings, mapping details, idempotency, rate."""

import gzip
import json
import re
import time
import zlib
from io import StringIO
from types import SimpleNamespace

import brotli
import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from bugtracker.services import api_key_create_with_dsn, api_key_revoke
from dedup.models import DedupGroup
from ingest import ratelimit
from reports.models import BugReport

from .envelopes import envelope, event_envelope, event_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def dsn():
    _, _, text = api_key_create_with_dsn(name="shop-backend", role="reporter", host="testserver")
    match = re.fullmatch(r"http://([0-9a-f]{32})@testserver/(\d+)", text)
    assert match, text
    return match.group(1), int(match.group(2))


def post(dsn, body: bytes, *, endpoint="envelope", encoding=None, auth="header", project=None):
    public_key, project_id = dsn
    headers = {}
    path = f"/api/{project or project_id}/{endpoint}/"
    if auth == "header":
        headers["HTTP_X_SENTRY_AUTH"] = (
            f"Sentry sentry_version=7, sentry_client=test/1.0, sentry_key={public_key}"
        )
    elif auth == "query":
        path += f"?sentry_key={public_key}&sentry_version=7"
    if encoding:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    return Client().post(path, body, content_type="application/x-sentry-envelope", **headers)


def test_create_api_key_prints_a_dsn_and_the_key_last():
    out = StringIO()
    call_command(
        "create_api_key",
        "billing",
        "--role",
        "reporter",
        "--dsn",
        "--host",
        "bugs.example:8000",
        stdout=out,
    )
    lines = out.getvalue().strip().splitlines()
    assert re.search(r"http://[0-9a-f]{32}@bugs\.example:8000/\d+$", lines[0])
    assert lines[-1].startswith("bt_")


def test_an_event_becomes_a_report_answered_with_its_id(dsn):
    event = event_payload(environment="production", tags={"region": "eu"}, server_name="web-1")
    answer = post(dsn, event_envelope(event))
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"id": event["event_id"]}
    report = BugReport.objects.get()
    assert report.source == "system" and report.reporter_id == "shop-backend"
    assert report.title == "ZeroDivisionError: division by zero"
    assert report.environment == "production"
    assert report.metadata["tags"] == {"region": "eu"} and report.metadata["server_name"] == "web-1"
    assert report.stack_trace == (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/shop/views.py", line 12, in total\n'
        '  File "/srv/app/shop/maths.py", line 3, in ratio\n'
        "ZeroDivisionError: division by zero\n"
    )
    assert report.dedup_group is not None and report.request_id


def test_the_query_string_key_works_too_and_store_takes_a_bare_event(dsn):
    answer = post(dsn, json.dumps(event_payload()).encode(), endpoint="store", auth="query")
    assert answer.status_code == 200, answer.content
    assert BugReport.objects.count() == 1


@pytest.mark.parametrize(
    "auth, project, status",
    [("none", None, 401), ("header", 999999, 403)],
)
def test_no_key_or_another_project_is_refused(dsn, auth, project, status):
    answer = post(dsn, event_envelope(), auth=auth, project=project)
    assert answer.status_code == status
    assert answer["Content-Type"] == "application/problem+json"
    assert BugReport.objects.count() == 0


def test_a_revoked_or_unknown_key_is_401(dsn):
    assert post(("0" * 32, dsn[1]), event_envelope()).status_code == 401
    api_key_revoke(name="shop-backend")
    assert post(dsn, event_envelope()).status_code == 401
    assert BugReport.objects.count() == 0


def test_the_same_event_twice_is_one_report(dsn):
    body = event_envelope()
    first, second = post(dsn, body), post(dsn, body)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert BugReport.objects.count() == 1
    assert DedupGroup.objects.get().occurrences == 1
    assert first.json()["id"] == json.loads(body.split(b"\n")[0])["event_id"]


def test_the_same_event_id_from_another_dsn_is_another_report(dsn):
    _, _, other = api_key_create_with_dsn(name="other-app", role="reporter", host="testserver")
    other_key, other_project = re.fullmatch(r"http://(\w+)@testserver/(\d+)", other).groups()
    body = event_envelope()
    assert post(dsn, body).status_code == 200
    assert post((other_key, int(other_project)), body).status_code == 200
    assert sorted(BugReport.objects.values_list("reporter_id", flat=True)) == [
        "other-app",
        "shop-backend",
    ]


@pytest.mark.parametrize(
    "item_type", ["transaction", "session", "sessions", "client_report", "check_in", "attachment"]
)
def test_other_items_are_accepted_and_dropped(dsn, item_type):
    answer = post(dsn, envelope(({"type": item_type}, b'{"anything": 1}')))
    assert answer.status_code == 200
    assert BugReport.objects.count() == 0


def test_an_event_beside_dropped_items_is_filed(dsn):
    event = event_payload()
    body = envelope(
        ({"type": "session"}, b'{"sid": "x"}'),
        ({"type": "event"}, json.dumps(event).encode()),
        ({"type": "attachment", "filename": "log.txt"}, b"line\nline\n"),
        header={"event_id": event["event_id"]},
    )
    assert post(dsn, body).json() == {"id": event["event_id"]}
    assert BugReport.objects.count() == 1


@pytest.mark.parametrize(
    "encoding, compress",
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-15)),
        ("br", brotli.compress),
    ],
)
def test_compressed_bodies(dsn, encoding, compress):
    answer = post(dsn, compress(event_envelope()), encoding=encoding)
    assert answer.status_code == 200, answer.content
    assert BugReport.objects.count() == 1


def test_an_unknown_encoding_is_415(dsn):
    assert post(dsn, event_envelope(), encoding="zstd").status_code == 415


@pytest.mark.parametrize(
    "level, severity",
    [
        ("fatal", "critical"),
        ("error", "high"),
        ("warning", "medium"),
        ("info", "low"),
        ("debug", "low"),
    ],
)
def test_levels(dsn, level, severity):
    post(dsn, event_envelope(level=level))
    assert BugReport.objects.get().severity == severity


def test_a_logentry_titles_a_message_event(dsn):
    event = event_payload(
        logentry={"message": "Payment %s failed", "formatted": "Payment 42 failed"}
    )
    del event["exception"]
    post(dsn, event_envelope(event))
    report = BugReport.objects.get()
    assert report.title == "Payment 42 failed" and report.stack_trace == ""


def test_fingerprint_with_default_splits_by_the_extra_part(dsn):
    for tenant in ("a", "b", "a"):
        post(dsn, event_envelope(fingerprint=["{{ default }}", f"tenant-{tenant}"]))
    post(dsn, event_envelope(fingerprint=["{{ default }}"]))
    post(dsn, event_envelope())
    occurrences = sorted(DedupGroup.objects.values_list("occurrences", flat=True))
    assert occurrences == [1, 2, 2]  # tenant-b; tenant-a twice; the default twice


def test_user_is_kept_only_as_an_id_unless_keep_pii(dsn):
    user = {"id": "7", "email": "bob@example.com", "ip_address": "198.51.100.4"}
    post(dsn, event_envelope(user=user))
    with override_settings(INGEST_KEEP_PII=True):
        post(dsn, event_envelope(user=user))
    plain, kept = BugReport.objects.order_by("created_at")
    assert plain.metadata["user"] == {"id": "7"}
    assert kept.metadata["user"] == user


def test_nul_and_lone_surrogates_are_stored_cleanly(dsn):
    event = event_payload(message="bad\u0000byte")
    body = json.dumps(event).replace("division by zero", "div \\ud800 zero").encode()
    answer = post(dsn, envelope(({"type": "event"}, body)))
    assert answer.status_code == 200, answer.content
    assert BugReport.objects.get().title == "ZeroDivisionError: div ? zero"


@override_settings(INGEST_RATE_PER_KEY="2/min")
def test_over_the_rate_is_429_with_sentry_rate_limits(dsn, monkeypatch):
    # All three inside one fixed window, 20 s into it: a real clock may cross a minute.
    minute = int(time.time() // 60 * 60)
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: minute + 20.0))
    answers = [post(dsn, event_envelope()) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[-1]
    assert limited["Retry-After"] == "40"
    assert limited["X-Sentry-Rate-Limits"] == f"{limited['Retry-After']}::key"
    assert BugReport.objects.count() == 2


def test_an_invalid_event_id_is_400(dsn):
    answer = post(dsn, event_envelope(event_payload(event_id="not-a-uuid")))
    assert answer.status_code == 400
    assert BugReport.objects.count() == 0


@override_settings(INGEST_KEY_CACHE_SECONDS=5)
def test_a_revoked_dsn_stops_within_the_key_cache_time(dsn, monkeypatch):

    from ingest import auth

    assert post(dsn, event_envelope()).status_code == 200
    api_key_revoke(name="shop-backend")
    later = time.monotonic() + 6
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert post(dsn, event_envelope()).status_code == 401
    assert BugReport.objects.count() == 1


def test_get_is_a_405_problem(dsn):
    answer = Client().get(f"/api/{dsn[1]}/envelope/")
    assert answer.status_code == 405 and answer["Allow"] == "POST"
    assert answer["Content-Type"] == "application/problem+json"
