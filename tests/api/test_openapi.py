import pytest
from django.core.management import call_command


def test_schema_generates_without_warnings(tmp_path, capsys):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/bug-reports", "/api/bug-reports/claim-next", "/api/bug-reports/{id}/claim"):
        assert f"{path}" in text


@pytest.mark.django_db
def test_schema_and_docs_are_served(api_client):
    schema = api_client.get("/api/schema")
    assert schema.status_code == 200
    docs = api_client.get("/api/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_submit_documents_its_503_and_its_idempotent_409_with_retry_after(api_client):
    schema = api_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    responses = schema["paths"]["/api/bug-reports/"]["post"]["responses"]
    for code, type_slug in (
        ("503", "database-unavailable"),
        ("409", "idempotent-request-in-progress"),
    ):
        response = responses[code]
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
        assert f"urn:bugtracker:problem:{type_slug}" in response["description"]
        assert response["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "DB_REQUEST_DEADLINE" in responses["503"]["description"]
    # A 409 elsewhere is a state conflict, without Retry-After.
    claim = schema["paths"]["/api/bug-reports/{id}/claim/"]["post"]["responses"]["409"]
    assert "headers" not in claim
