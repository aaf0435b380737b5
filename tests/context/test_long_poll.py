"""claim-next `wait`: the long-poll, in process and across two server processes."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from bugtracker.services import api_key_create
from bugtracker.wakeups import Channel, TooManyWaiters
from reports import waiting
from reports.claims import claimable_reports
from reports.lifecycle import db_now
from reports.models import BugReport
from reports.waiting import CLAIMABLE, claim_filter_matches
from tests.conftest import client_for
from tests.factories import make_report
from tests.hardening.live import LiveServer

CLAIM_NEXT = "/api/bug-reports/claim-next"
UNTHROTTLED = {
    f"THROTTLE_{role}": "1000000/min" for role in ("ANONYMOUS", "REPORTER", "AGENT", "ADMIN")
}


@pytest.fixture(autouse=True)
def _stop_listener():
    yield
    CLAIMABLE.stop()  # its connection must not outlive the test database


@pytest.mark.django_db
def test_a_wait_that_ends_answers_204(agent_client):
    started = time.monotonic()
    response = agent_client.post(CLAIM_NEXT, {"wait": 1}, format="json")
    assert response.status_code == 204
    assert time.monotonic() - started >= 1
    for bad in (-1, 61, "5", 1.5, True):
        response = agent_client.post(CLAIM_NEXT, {"wait": bad}, format="json")
        assert response.status_code == 400 and "wait" in response.json()["errors"], bad


@pytest.mark.django_db
def test_an_available_report_is_claimed_at_once_even_with_wait(agent_client):
    report = make_report()
    started = time.monotonic()
    response = agent_client.post(CLAIM_NEXT, {"wait": 30}, format="json")
    assert response.status_code == 200 and response.json()["report"]["id"] == str(report.pk)
    assert time.monotonic() - started < 5


@pytest.mark.django_db(transaction=True)
def test_a_waiting_agent_gets_a_report_submitted_while_it_waits():
    agent = client_for("agent", "waiting-agent")
    result = {}

    def wait():
        result["response"] = agent.post(
            CLAIM_NEXT, {"wait": 20, "component": "billing"}, format="json"
        )
        connection.close()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    make_report(component="search")  # not what it waits for
    wanted = make_report(component="billing")
    waiter.join(25)
    assert result["response"].status_code == 200
    assert result["response"].json()["report"]["id"] == str(wanted.pk)
    assert BugReport.objects.get(pk=wanted.pk).claim_holder == "waiting-agent"


@pytest.mark.django_db(transaction=True)
def test_a_lease_that_runs_out_reaches_a_waiter_by_its_own_look(monkeypatch):
    # Nothing is committed when a lease runs out: only the waiter's periodic look finds it.
    monkeypatch.setitem(waiting.RECHECK_SECONDS, connection.vendor, 0.5)
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.5)
    report = make_report()
    holder = client_for("agent", "lapsing-agent")
    taken = holder.post(f"/api/bug-reports/{report.pk}/claim", {"lease_seconds": 1}, format="json")
    assert taken.status_code == 200
    started = time.monotonic()
    response = client_for("agent", "next-agent").post(CLAIM_NEXT, {"wait": 10}, format="json")
    assert response.status_code == 200 and response.json()["report"]["id"] == str(report.pk)
    assert 0.5 < time.monotonic() - started < 5
    assert BugReport.objects.get(pk=report.pk).claim_holder == "next-agent"


@pytest.mark.django_db
def test_parking_beyond_the_slots_is_a_503(settings):
    settings.WAIT_SLOTS = 1
    channel = Channel("test_slots", listen=False)
    first = channel.park()
    try:
        with pytest.raises(TooManyWaiters):
            channel.park()
    finally:
        channel.leave(first)
    channel.leave(channel.park())


def test_one_notification_wakes_one_matching_waiter_longest_parked_first(settings):
    settings.WAIT_SLOTS = 10
    channel = Channel("test_dispatch", listen=False)
    billing = [channel.park(lambda p: p.get("component") == "billing") for _ in range(2)]
    anything = channel.park()
    assert channel.dispatch({"component": "billing"})
    assert [w.wait(0) for w in (*billing, anything)] == [True, False, False]
    assert channel.dispatch({"component": "billing"})
    assert [w.wait(0) for w in (*billing, anything)] == [False, True, False]
    assert channel.dispatch({"component": "search"})
    assert [w.wait(0) for w in (*billing, anything)] == [False, False, True]
    for waiter in (*billing, anything):
        channel.leave(waiter)
    assert not channel.dispatch({"component": "billing"})


@pytest.mark.django_db
def test_the_wake_up_filter_agrees_with_the_claim_filter():
    reports = [
        make_report(severity=s, category=c, component=comp)
        for s in ("critical", "low")
        for c in ("crash", None)
        for comp in ("billing", "search")
    ]
    for filters in (
        {},
        {"severity": ["low"]},
        {"min_severity": "high"},
        {"category": ["crash"]},
        {"component": ["billing", "search"], "severity": ["critical", "low"]},
        {"component": ["search"], "min_severity": "low", "category": ["crash"]},
    ):
        claimable = set(
            claimable_reports(now=db_now(), filters=filters).values_list("pk", flat=True)
        )
        woken = {
            r.pk
            for r in reports
            if claim_filter_matches(
                filters, {"severity": r.severity, "category": r.category, "component": r.component}
            )
        }
        assert woken == claimable, filters


# Two server processes on PostgreSQL ----------------------------------------------------


def live_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_report_committed_by_another_process_is_got_within_a_second(tmp_path):
    _, agent_key = api_key_create(name="agent-live", role="agent")
    _, reporter_key = api_key_create(name="reporter-live", role="reporter")
    agent = {"Authorization": f"Bearer {agent_key}"}
    reporter = {"Authorization": f"Bearer {reporter_key}"}
    with (
        LiveServer(database_url=live_url(), log_path=tmp_path / "a.log", **UNTHROTTLED) as a,
        LiveServer(database_url=live_url(), log_path=tmp_path / "b.log", **UNTHROTTLED) as b,
    ):
        for round_ in range(3):
            component = f"live-{round_}"
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(
                    a.request, "POST", CLAIM_NEXT, {"wait": 20, "component": component}, agent
                )
                time.sleep(1.5)  # parked, and its process listening
                assert not waiting.done()
                submitted = b.request(
                    "POST",
                    "/api/bug-reports",
                    {"title": f"Live {round_}", "component": component},
                    reporter,
                )
                committed = time.monotonic()
                assert submitted.status == 201
                claimed = waiting.result(timeout=20)
                got = time.monotonic()
            assert claimed.status == 200, claimed.body
            assert claimed.json()["report"]["id"] == submitted.json()["id"]
            assert got - committed < 1.0, f"round {round_}: {got - committed:.2f} s"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_waiting_agents_never_get_the_same_report(tmp_path):
    keys = [api_key_create(name=f"agent-w{i}", role="agent")[1] for i in range(12)]
    _, reporter_key = api_key_create(name="reporter-w", role="reporter")
    reporter = {"Authorization": f"Bearer {reporter_key}"}
    with (
        LiveServer(database_url=live_url(), log_path=tmp_path / "a.log", **UNTHROTTLED) as a,
        LiveServer(database_url=live_url(), log_path=tmp_path / "b.log", **UNTHROTTLED) as b,
        ThreadPoolExecutor(len(keys)) as pool,
    ):
        answers = [
            pool.submit(
                (a, b)[i % 2].request,
                "POST",
                CLAIM_NEXT,
                {"wait": 8},
                {"Authorization": f"Bearer {key}"},
            )
            for i, key in enumerate(keys)
        ]
        time.sleep(1.5)
        ids = [
            (a, b)[i % 2]
            .request("POST", "/api/bug-reports", {"title": "Race", "component": f"c{i}"}, reporter)
            .json()["id"]
            for i in range(8)
        ]
        results = [answer.result(timeout=30) for answer in answers]
    claimed = [r.json()["report"]["id"] for r in results if r.status == 200]
    assert sorted(claimed) == sorted(ids)  # every report once, none twice
    assert sorted(r.status for r in results) == [200] * 8 + [204] * 4


@pytest.mark.django_db(transaction=True)
def test_threads_beyond_the_persistent_ones_close_their_connection_after_a_request(settings):
    from bugtracker.wakeups import keep_or_close_connection

    def request_in_a_thread() -> bool:
        open_after = {}

        def run():
            BugReport.objects.exists()  # the request used the database
            keep_or_close_connection()
            open_after["open"] = connection.connection is not None
            connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return open_after["open"]

    settings.DB_PERSISTENT_CONNECTIONS = 0
    assert request_in_a_thread() is False
    settings.DB_PERSISTENT_CONNECTIONS = 10_000
    assert request_in_a_thread() is True


@pytest.mark.django_db
def test_no_long_poll_outlasts_the_operators_cap(agent_client, settings):
    settings.LONG_POLL_MAX_SECONDS = 1
    started = time.monotonic()
    assert agent_client.post(CLAIM_NEXT, {"wait": 60}, format="json").status_code == 204
    assert agent_client.get("/api/events?wait=60&after=WzAsIDk5OTk5OTk5XQ").status_code == 200
    assert time.monotonic() - started < 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_long_poll_outlives_the_requests_database_deadline(settings):
    # The deadline cuts a request's connection after DB_REQUEST_DEADLINE seconds; a parked
    # long-poll holds none and starts a fresh deadline for each look.
    settings.DB_REQUEST_DEADLINE = 1
    agent = client_for("agent", "patient-agent")
    result = {}

    def wait():
        result["response"] = agent.post(CLAIM_NEXT, {"wait": 8, "component": "late"}, format="json")
        connection.close()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(2.5)
    report = make_report(component="late")
    thread.join(15)
    assert result["response"].status_code == 200, result["response"].content
    assert result["response"].json()["report"]["id"] == str(report.pk)
