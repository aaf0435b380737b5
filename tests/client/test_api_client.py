"""The API client's one request path: Retry-After honoured, problems raised as ApiError.

An in-memory transport stands in for the server here, since a live one cannot be made to
answer 429/503 on cue without waiting out real rate windows."""

import threading
import time

import httpx2
import pytest
from bugtracker_client import api as api_module
from bugtracker_client.api import ApiError, BugtrackerClient


@pytest.fixture
def waits(monkeypatch):
    slept = []
    test_thread = threading.get_ident()

    class Clock:
        """The client module's `time`, its sleeps recorded: only this module's, and only this
        thread's (the server's background threads sleep too in the same process)."""

        def __getattr__(self, name):
            return getattr(time, name)

        def sleep(self, seconds):
            if threading.get_ident() == test_thread:
                slept.append(seconds)

    monkeypatch.setattr(api_module, "time", Clock())
    return slept


def client_answering(*answers, seen=None):
    queue = list(answers)

    def handle(request):
        if seen is not None:
            seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return BugtrackerClient("http://tracker.test", "bt_key", transport=httpx2.MockTransport(handle))


def test_429_and_503_are_retried_after_the_servers_retry_after(waits):
    seen = []
    client = client_answering(
        httpx2.Response(429, headers={"Retry-After": "7"}, json={"title": "Slow down"}),
        httpx2.Response(503, headers={"Retry-After": "2"}, json={"title": "Database down"}),
        httpx2.Response(200, json={"name": "agent-1", "role": "agent"}),
        seen=seen,
    )
    assert client.whoami() == {"name": "agent-1", "role": "agent"}
    assert waits == [7.0, 2.0]
    assert [r.headers["Authorization"] for r in seen] == ["Bearer bt_key"] * 3


def test_a_write_is_retried_on_429_but_not_on_a_connection_error(waits):
    client = client_answering(
        httpx2.Response(429, headers={"Retry-After": "1"}),
        httpx2.Response(201, json={"id": "e1", "kind": "note"}),
    )
    assert client.add_event("r1", message="hi")["kind"] == "note"
    failing = client_answering(httpx2.ConnectError("refused"))
    with pytest.raises(ApiError) as error:
        failing.add_event("r1", message="hi")
    assert error.value.status == 0 and "cannot reach" in str(error.value)


def test_retries_give_up_with_the_last_problem(waits):
    busy = httpx2.Response(503, headers={"Retry-After": "120"}, json={"title": "Unavailable"})
    client = client_answering(busy, busy, busy, busy)
    with pytest.raises(ApiError) as error:
        client.summary()
    assert error.value.status == 503
    assert waits == [60.0, 60.0, 60.0]  # capped


def test_problem_details_become_an_api_error_naming_the_fields(waits):
    client = client_answering(
        httpx2.Response(
            400,
            json={
                "type": "urn:bugtracker:problem:validation",
                "title": "Invalid input",
                "status": 400,
                "detail": "Some fields are invalid.",
                "errors": {"severity": ["Unknown value."]},
            },
        )
    )
    with pytest.raises(ApiError) as error:
        client.submit(title="x", severity="urgent")
    assert error.value.status == 400
    assert error.value.errors == {"severity": ["Unknown value."]}
    assert "severity: Unknown value." in str(error.value)
    assert waits == []
