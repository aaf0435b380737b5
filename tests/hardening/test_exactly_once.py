"""Idempotency keys across crashes and a silent database: a real gunicorn SIGKILLed under
clients that retry every unanswered submission with the same key and body. Every key ends
with exactly one report, retries are answered within seconds, nothing acknowledged is lost."""

import random
import threading
import time
from collections import defaultdict
from http.client import HTTPException

import pytest
from django.db import connection

from bugtracker.services import api_key_create
from reports.models import BugReport

from .live import LiveServer, TcpProxy, free_port, http_request
from .test_database_trouble import UNTHROTTLED, assert_unavailable

CLIENTS = 8
KILLS = 10
# A key in flight at a crash is answered once the server is back: its restart (a few
# seconds on a loaded machine) plus a retry, never the minutes of a lingering lock.
RETRY_ANSWERED_WITHIN = 20.0


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Submitter(threading.Thread):
    """Submits reports with fresh keys; an unanswered request (connection lost, timeout,
    503, 409 in progress) is sent again with the same key and body until it is answered."""

    def __init__(self, base: str, auth: dict, name: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.base = base
        self.auth, self.name_, self.stop = auth, name, stop
        self.acknowledged: dict[str, str] = {}  # key -> report id
        self.waits: list[tuple[str, float, int]] = []  # key, seconds to an answer, attempts
        self.unexpected: list = []

    def run(self):
        try:
            self.submit_until_stopped()
        except BaseException as exc:  # a client that dies must fail the test, not pass it
            self.unexpected.append(("exception", repr(exc)))

    def submit_until_stopped(self):
        number = 0
        while not self.stop.is_set():
            number += 1
            key = f"{self.name_}-{number}"
            body = {"title": f"Crash {key}", "description": "submitted under SIGKILL"}
            headers = {**self.auth, "Idempotency-Key": key}
            first_sent, attempts = time.monotonic(), 0
            while True:
                attempts += 1
                try:
                    answer = http_request(
                        self.base, "POST", "/api/bug-reports", body, headers, timeout=10
                    )
                except (OSError, HTTPException):  # the server died under the request
                    time.sleep(0.05)
                    continue
                if answer.status == 201:
                    self.acknowledged[key] = answer.json()["id"]
                    self.waits.append((key, time.monotonic() - first_sent, attempts))
                    break
                if answer.status in (409, 503):
                    if answer.status == 409:
                        assert answer.json()["type"].endswith("idempotent-request-in-progress")
                    self.unexpected.append(("retry-after", answer.headers.get("Retry-After")))
                    time.sleep(float(answer.headers.get("Retry-After") or 1) / 4)
                    continue
                self.unexpected.append((answer.status, answer.body[:300]))
                break


def assert_exactly_once(submitters):
    acknowledged = {k: v for s in submitters for k, v in s.acknowledged.items()}
    reports = defaultdict(list)
    for pk, title in BugReport.objects.values_list("pk", "title"):
        reports[title.removeprefix("Crash ")].append(str(pk))
    twice = {key: ids for key, ids in reports.items() if len(ids) > 1}
    assert not twice, f"keys with more than one report: {twice}"
    # Every acknowledged submission exists, and is the report its answer named.
    assert {key: ids[0] for key, ids in reports.items() if key in acknowledged} == acknowledged
    return acknowledged


@pytest.mark.django_db(transaction=True)
def test_sigkill_under_retrying_clients_leaves_exactly_one_report_per_key(tmp_path):
    _, agent_key = api_key_create(name="chaos-agent", role="agent")
    auth = {"Authorization": f"Bearer {agent_key}"}
    port, url = free_port(), database_url()
    stop = threading.Event()
    submitters = [
        Submitter(f"http://127.0.0.1:{port}", auth, f"c{i}", stop) for i in range(CLIENTS)
    ]
    rng = random.Random(21)
    for kill in range(KILLS + 1):
        log = tmp_path / f"server-{kill}.log"
        server = LiveServer(database_url=url, log_path=log, port=port, **UNTHROTTLED)
        server.__enter__()
        try:
            if kill == 0:
                for submitter in submitters:
                    submitter.start()
            if kill == KILLS:
                time.sleep(1.0)
                stop.set()  # each client finishes the key it is on, against a live server
                for submitter in submitters:
                    submitter.join(timeout=60)
                    assert not submitter.is_alive()
            else:
                time.sleep(rng.uniform(0.3, 1.5))
                server.crash()
        finally:
            server.__exit__(None, None, None)

    for submitter in submitters:
        assert not [u for u in submitter.unexpected if u[0] != "retry-after"], submitter.unexpected
        # A 409 in progress or a 503 says when to come back: a second or two, not minutes.
        for _, retry_after in submitter.unexpected:
            assert retry_after is not None and 1 <= int(retry_after) <= 2
    acknowledged = assert_exactly_once(submitters)
    retried = [w for s in submitters for w in s.waits if w[2] > 1]
    assert len(acknowledged) >= CLIENTS * KILLS / 2  # the kills landed among real traffic
    assert len(retried) >= KILLS  # requests were cut by the kills and sent again
    slowest = max(retried, key=lambda w: w[1])
    assert slowest[1] < RETRY_ANSWERED_WITHIN, slowest


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pool", ["0", "12"], ids=["per-thread-connections", "pool"])
def test_silent_database_is_503_within_the_deadline_then_recovers(tmp_path, pool):
    _, agent_key = api_key_create(name="black-hole-agent", role="agent")
    auth = {"Authorization": f"Bearer {agent_key}"}
    db = connection.settings_dict
    upstream = (db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    limits = {
        "DB_CONNECT_TIMEOUT": "2",
        "DB_STATEMENT_TIMEOUT": "2",
        "DB_LOCK_TIMEOUT": "1",
        "DB_REQUEST_DEADLINE": "3",
        "CONN_MAX_AGE": "600",
        "DB_POOL_MAX": pool,
    }
    bound = 3 + 3  # the deadline, plus the watchdog's tick and a loaded machine's slack
    with TcpProxy(upstream) as proxy:
        url = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
        with LiveServer(
            database_url=url, log_path=tmp_path / "server.log", **UNTHROTTLED, **limits
        ) as server:
            pid = server.process.pid

            def submit(key):
                body = {"title": f"Crash {key}"}
                headers = {**auth, "Idempotency-Key": key}
                return server.request("POST", "/api/bug-reports", body, headers, timeout=60)

            before = submit("before")
            assert before.status == 201, before.body

            proxy.black_hole()
            answers, lock = {}, threading.Lock()

            def call(name, fn):
                started = time.monotonic()
                answer = fn()
                with lock:
                    answers[name] = (answer, time.monotonic() - started)

            calls = {f"k{i}": (lambda i=i: submit(f"k{i}")) for i in range(3)} | {
                "list": lambda: server.request("GET", "/api/bug-reports", headers=auth),
                "claim-next": lambda: server.request(
                    "POST", "/api/bug-reports/claim-next", {}, auth
                ),
            }
            threads = [threading.Thread(target=call, args=item) for item in calls.items()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            for name, (answer, seconds) in answers.items():
                assert_unavailable(answer)
                assert seconds < bound, (name, seconds)
            assert len(answers) == len(calls)

            proxy.restore()
            acknowledged = {"before": before.json()["id"]}
            deadline = time.monotonic() + 30
            for key in ("k0", "k1", "k2"):
                while True:
                    answer = submit(key)
                    if answer.status == 201:
                        acknowledged[key] = answer.json()["id"]
                        break
                    assert answer.status in (409, 503), answer.body
                    assert time.monotonic() < deadline, "no recovery"
                    time.sleep(0.5)
            listed = server.request("GET", "/api/bug-reports?page_size=10", headers=auth)
            assert listed.status == 200
            assert server.process.pid == pid and server.process.poll() is None

    reports = defaultdict(list)
    for pk, title in BugReport.objects.values_list("pk", "title"):
        reports[title.removeprefix("Crash ")].append(str(pk))
    assert {key: ids for key, ids in reports.items()} == {
        key: [pk] for key, pk in acknowledged.items()
    }
