import threading
from collections import Counter

import pytest
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from bugtracker import idempotency
from bugtracker.models import IdempotencyRecord
from bugtracker.services import api_key_create
from dedup.models import DedupGroup
from reports.models import BugReport, BugReportEvent
from tests.conftest import client_for

URL = "/api/bug-reports"


@pytest.mark.django_db
def test_same_key_same_body_replays_the_first_response(agent_client):
    first = agent_client.post(URL, {"title": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = agent_client.post(URL, {"title": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert BugReport.objects.count() == 1


@pytest.mark.django_db
def test_same_key_other_body_is_422(agent_client):
    agent_client.post(URL, {"title": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    response = agent_client.post(URL, {"title": "twice"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert BugReport.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_caller(agent_client, other_agent_client):
    agent_client.post(URL, {"title": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    response = other_agent_client.post(
        URL, {"title": "b"}, format="json", HTTP_IDEMPOTENCY_KEY="shared"
    )
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert BugReport.objects.count() == 2


@pytest.mark.django_db
def test_a_failed_request_does_not_burn_the_key(agent_client):
    bad = agent_client.post(URL, {"title": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert bad.status_code == 400
    good = agent_client.post(URL, {"title": "fixed"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert good.status_code == 201


@pytest.mark.django_db
def test_overlong_key_is_400(agent_client):
    response = agent_client.post(URL, {"title": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_six_concurrent_requests_with_one_key_create_one_report():
    _, raw = api_key_create(name="racer", role="agent")
    statuses, bodies, lock = Counter(), [], threading.Lock()
    replayed = 0
    barrier = threading.Barrier(6)

    def submit():
        nonlocal replayed
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        try:
            barrier.wait()
            response = client.post(
                URL, {"title": "race"}, format="json", HTTP_IDEMPOTENCY_KEY="same"
            )
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 201:
                    bodies.append(response.json()["id"])
                    replayed += response.get("Idempotent-Replayed") == "true"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # The others waited on the first one's key and replayed its answer: no 409 to retry.
    assert BugReport.objects.count() == 1
    assert statuses == {201: 6}, statuses
    assert set(bodies) == {str(BugReport.objects.get().pk)}
    assert replayed == 5


@pytest.mark.django_db
def test_a_crash_before_the_commit_leaves_nothing_and_the_retry_does_the_work(
    agent_client, monkeypatch
):
    def crash(*args):
        raise RuntimeError("process died after the report was written")

    monkeypatch.setattr(idempotency, "_record", crash)
    with pytest.raises(RuntimeError):
        agent_client.post(URL, {"title": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert BugReport.objects.count() == 0
    assert BugReportEvent.objects.count() == DedupGroup.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0

    monkeypatch.undo()
    retry = agent_client.post(URL, {"title": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry
    again = agent_client.post(URL, {"title": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert again["Idempotent-Replayed"] == "true"
    assert [str(pk) for pk in BugReport.objects.values_list("pk", flat=True)] == [
        retry.json()["id"]
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_held_past_the_lock_timeout_is_409_with_retry_after_then_free_on_rollback():
    client = client_for("agent", "holder")
    holding, release = threading.Event(), threading.Event()

    def hold_the_key():
        # Another request with the key, mid-work: its record inserted, not committed.
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(
                    caller="holder", key="held", method="POST", path=URL, body_hash="x"
                )
                holding.set()
                release.wait(30)
                transaction.set_rollback(True)  # then it fails: nothing of it remains
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_key)
    holder.start()
    try:
        assert holding.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        waited = client.post(URL, {"title": "held"}, format="json", HTTP_IDEMPOTENCY_KEY="held")
    finally:
        release.set()
        holder.join(30)
    assert waited.status_code == 409
    assert waited["Content-Type"] == "application/problem+json"
    assert waited["Retry-After"] == "1"
    assert waited.json()["type"].endswith("idempotent-request-in-progress")
    assert BugReport.objects.count() == 0

    retry = client.post(URL, {"title": "held"}, format="json", HTTP_IDEMPOTENCY_KEY="held")
    assert retry.status_code == 201, retry.json()
    assert BugReport.objects.count() == 1
