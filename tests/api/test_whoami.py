import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["reporter", "agent", "admin"])
def test_whoami_names_the_calling_key_and_its_role(role):
    from tests.conftest import client_for

    response = client_for(role, name=f"{role}-bot").get("/api/whoami")
    assert response.status_code == 200
    assert response.json() == {"name": f"{role}-bot", "role": role}


def test_whoami_answers_with_and_without_a_trailing_slash(agent_client):
    assert agent_client.get("/api/whoami/").json()["name"] == "agent-1"


def test_whoami_without_a_key_is_a_401_problem(api_client):
    response = api_client.get("/api/whoami")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_whoami_is_in_the_schema(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    text = out.read_text()
    assert "/api/whoami/:" in text
    assert "WhoAmI" in text
