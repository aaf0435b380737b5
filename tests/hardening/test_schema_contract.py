"""The served schema describes every operation fully enough for a tool to hold the API to it."""

import pytest

from bugtracker.schema import LINKS

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api_client):
    response = api_client.get("/api/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_operation_says_what_it_promises_and_who_may_call_it(schema):
    for path, method, operation in operations(schema):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation["x-roles"], where
        assert f"Roles: {', '.join(operation['x-roles'])}." in operation["description"], where
        assert any(code.startswith("2") for code in operation["responses"]), where


def test_every_problem_is_problem_json_and_throttles_say_when_to_retry(schema):
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], (path, code)
            if code in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, code)
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), (method, path)
        if "x-roles" in operation and "anonymous" not in operation["x-roles"]:
            assert {"401", "403", "429", "503"} <= set(responses), (method, path)
        assert "414" in responses, (method, path)
        if "{id}" in path:
            assert "404" in responses, (method, path)
            (parameter,) = [p for p in operation["parameters"] if p["name"] == "id"]
            assert parameter["schema"] == {"type": "string", "format": "uuid"}


def test_request_bodies_refuse_unknown_fields_as_the_server_does(schema):
    components = schema["components"]["schemas"]
    for name in ("BugReportCreateRequest", "PatchedBugReportUpdateRequest", "LeaseRequest"):
        assert components[name]["additionalProperties"] is False, name
    assert components["BugReportCreateRequest"]["properties"]["metadata"]["type"] == "object"


def test_links_name_real_operations(schema):
    ids = {operation["operationId"] for _, _, operation in operations(schema)}
    declared = {(source, target) for (source, _code), target, _ in LINKS}
    assert {source for source, _ in declared} <= ids
    assert {target for _, target in declared} <= ids
    create = schema["paths"]["/api/bug-reports/"]["post"]["responses"]["201"]
    assert create["links"]["bug_reports_claim_create"]["parameters"] == {"id": "$response.body#/id"}
