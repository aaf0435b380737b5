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
