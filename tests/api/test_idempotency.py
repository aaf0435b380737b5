import threading
from collections import Counter

import pytest
from django.db import connections
from rest_framework.test import APIClient

from bugtracker.services import api_key_create
from reports.models import BugReport

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
    barrier = threading.Barrier(6)

    def submit():
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
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert BugReport.objects.count() == 1
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1
    assert set(bodies) == {str(BugReport.objects.get().pk)}
