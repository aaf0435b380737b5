import pytest

pytestmark = pytest.mark.django_db


def test_submit_then_read(agent_client):
    created = agent_client.post("/api/bug-reports", {"title": "Boom"}, format="json")
    assert created.status_code == 201, created.json()
    got = agent_client.get(created["Location"])
    assert got.status_code == 200
    assert got.json()["title"] == "Boom"
