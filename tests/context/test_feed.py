"""GET /api/events: the changes feed, in commit order, never skipping or repeating."""

import random
import threading
import time

import pytest
from django.db import connection, transaction

from reports.feed import Position, feed_page
from reports.models import BugReportEvent
from reports.services import report_add_event
from tests.conftest import client_for
from tests.factories import make_report

FEED = "/api/events"


def follow(client, url=FEED, pages=100):
    events = []
    for _ in range(pages):
        body = client.get(url).json()
        assert body["next"], "every page carries next"
        events += body["results"]
        if not body["results"]:
            return events, body["next"]
        url = body["next"]
    raise AssertionError("too many pages")


# The feed serves committed transactions only: these tests commit (transaction=True).
@pytest.mark.django_db(transaction=True)
def test_the_feed_serves_every_event_once_in_order_with_a_cursor_to_resume(agent_client):
    first, second = make_report(), make_report()
    report_add_event(report_id=first.pk, kind="note", actor="a", message="one")
    events, resume = follow(agent_client, f"{FEED}?page_size=2")
    table = list(BugReportEvent.objects.order_by("id").values_list("id", flat=True))
    assert [e["id"] for e in events] == table
    assert {e["report_id"] for e in events} == {str(first.pk), str(second.pk)}
    assert set(events[0]) == {"id", "report_id", "kind", "actor", "message", "data", "created_at"}
    # Nothing new: an empty page that still says where to resume; then only what is new.
    assert agent_client.get(resume).json()["results"] == []
    report_add_event(report_id=second.pk, kind="agent_log", actor="a", message="two")
    assert [e["message"] for e in agent_client.get(resume).json()["results"]] == ["two"]


@pytest.mark.django_db(transaction=True)
def test_kind_filters_the_feed(agent_client):
    report = make_report()
    for kind in ("note", "agent_log", "note"):
        report_add_event(report_id=report.pk, kind=kind, actor="a", message=kind)
    events, _ = follow(agent_client, f"{FEED}?kind=note,agent_log&page_size=1")
    assert [e["kind"] for e in events] == ["note", "agent_log", "note"]
    events, _ = follow(agent_client, f"{FEED}?kind=created")
    assert [e["report_id"] for e in events] == [str(report.pk)]


@pytest.mark.django_db
def test_bad_feed_parameters_are_400s_naming_them(agent_client, reporter_client):
    for query, field in (
        ("after=nonsense", "after"),
        ("after=WzEsIC0xXQ", "after"),  # [1, -1]
        ("kind=note,nope", "kind"),
        ("wait=61", "wait"),
        ("wait=-1", "wait"),
        ("wait=1.5", "wait"),
        ("page_size=501", "page_size"),
    ):
        response = agent_client.get(f"{FEED}?{query}")
        assert response.status_code == 400, query
        assert field in response.json()["errors"], query
    assert reporter_client.get(FEED).status_code == 403


@pytest.mark.django_db
def test_a_wait_on_an_empty_feed_ends_with_an_empty_page(agent_client):
    _, resume = follow(agent_client)
    started = time.monotonic()
    body = agent_client.get(f"{resume}&wait=1").json()
    assert body["results"] == [] and body["next"]
    assert time.monotonic() - started >= 1


@pytest.mark.django_db(transaction=True)
def test_a_waiting_follower_gets_an_event_committed_while_it_waits():
    follower = client_for("agent", "follower")
    _, resume = follow(follower)
    got = {}

    def wait():
        got["body"] = follower.get(f"{resume}&wait=20").json()
        connection.close()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.5)
    report = make_report()
    thread.join(25)
    assert [e["report_id"] for e in got["body"]["results"]] == [str(report.pk)]


def test_cursors_round_trip_and_refuse_forgeries():
    assert Position.decode(Position(7, 42).encode()) == Position(7, 42)
    for bad in ("", "!!", "bnVsbA", "WyJhIiwgMV0", "W3RydWUsIDFd"):  # null, ["a", 1], [true, 1]
        with pytest.raises(ValueError):
            Position.decode(bad)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_follower_sees_every_event_once_in_commit_order_under_8_concurrent_writers():
    reports = [make_report() for _ in range(8)]
    _, start = feed_page(after=Position(), kinds=None, limit=500)
    follower = client_for("agent", "follower-8")
    writers_done = threading.Event()
    commits: list[tuple[float, float, list[int]]] = []  # (began, committed, event ids)
    lock = threading.Lock()
    seen: list[dict] = []

    def write(index: int):
        rng = random.Random(index)
        for n in range(25):
            began = time.monotonic()
            with transaction.atomic():
                # Ids are taken now; the commit comes later, often after other writers'.
                first = report_add_event(
                    report_id=reports[index].pk,
                    kind="agent_log",
                    actor=f"w{index}",
                    message=f"{n}a",
                )
                time.sleep(rng.uniform(0, 0.01))
                second = report_add_event(
                    report_id=reports[index].pk, kind="note", actor=f"w{index}", message=f"{n}b"
                )
            committed = time.monotonic()
            with lock:
                commits.append((began, committed, [first.id, second.id]))
        connection.close()

    def read():
        url = f"/api/events?after={start.encode()}&wait=1&page_size=7"
        while True:
            body = follower.get(url).json()
            seen.extend(body["results"])
            url = body["next"]
            if not body["results"] and writers_done.is_set():
                body = follower.get(url).json()  # one more look after the last commit
                seen.extend(body["results"])
                if not body["results"]:
                    break
                url = body["next"]
        connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    reader.join(120)
    assert not reader.is_alive()

    ids = [event["id"] for event in seen]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM bug_report_events WHERE (txid, id) > (%s, %s) ORDER BY txid, id",
            [start.txid, start.id],
        )
        table = [row[0] for row in cursor.fetchall()]
    assert len(table) == 8 * 25 * 2
    assert len(ids) == len(set(ids)), "an event was served twice"
    assert ids == table, "the follower's events are the table's, in the feed's order"
    # Commit order: a transaction that committed before another began comes first.
    position = {event_id: index for index, event_id in enumerate(ids)}
    commits.sort()
    for began, _, later in commits:
        for _, committed, earlier in commits:
            if committed < began:
                assert max(position[i] for i in earlier) < min(position[i] for i in later)
    # And ids alone would have been out of commit order: the case the feed exists for.
    assert ids != sorted(ids)


def test_32_bit_xids_of_running_transactions_widen_to_their_64_bit_ids():
    from reports.feed import full_xid

    assert full_xid(100, xmax=150) == 100
    assert full_xid(150, xmax=150) is None  # began after the snapshot
    assert full_xid(200, xmax=150) is None
    epoch = 1 << 32
    assert full_xid(epoch - 5, xmax=3 * epoch + 10) == 3 * epoch - 5  # across an epoch
