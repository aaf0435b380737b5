"""Query strings are as strict as bodies (the parameters come from the OpenAPI schema)."""

import pytest

from bugtracker.querystrings import operations_table
from tests.factories import make_report

pytestmark = pytest.mark.django_db

URL = "/api/bug-reports"


def test_a_typo_is_a_400_naming_the_parameter_not_an_unfiltered_list(agent_client):
    make_report()
    response = agent_client.get(f"{URL}?staus=resolved")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert list(response.json()["errors"]) == ["staus"]


@pytest.mark.parametrize(
    "url",
    [
        f"{URL}/summary?verbose=1",
        "/api/dedup/groups?status=open",
        "/api/health?deep=1",
        f"{URL}/00000000-0000-0000-0000-000000000000?fields2=id",
        f"{URL}/00000000-0000-0000-0000-000000000000/attempts?order=1",
        f"{URL}/00000000-0000-0000-0000-000000000000/runs?x=1",
    ],
)
def test_every_endpoint_refuses_unknown_parameters(agent_client, url):
    response = agent_client.get(url)
    assert response.status_code == 400
    assert len(response.json()["errors"]) == 1


def test_the_parameters_other_endpoints_take_are_accepted_where_documented(agent_client):
    report = make_report()
    assert agent_client.get(f"{URL}?ordering=-created_at&page_size=5").status_code == 200
    page = agent_client.get(f"{URL}/{report.pk}/attempts?page_size=1")
    assert page.status_code == 200
    refused = agent_client.get(f"{URL}/{report.pk}?page_size=1")
    assert refused.status_code == 400 and "page_size" in refused.json()["errors"]


def test_a_repeated_list_parameter_means_any_of_its_values(agent_client):
    make_report(severity="high")
    make_report(severity="critical")
    make_report(severity="low")
    repeated = agent_client.get(f"{URL}?severity=high&severity=critical").json()["results"]
    comma = agent_client.get(f"{URL}?severity=high,critical").json()["results"]
    assert sorted(r["severity"] for r in repeated) == ["critical", "high"]
    assert repeated == comma
    statuses = agent_client.get(f"{URL}?status=open&status=resolved").json()["results"]
    assert len(statuses) == 3


def test_a_repeated_single_value_parameter_is_a_400(agent_client):
    response = agent_client.get(f"{URL}?ordering=priority&ordering=-created_at")
    assert response.status_code == 400 and "ordering" in response.json()["errors"]


def test_the_schema_documents_comma_lists_and_the_open_done_aliases(agent_client):
    schema = agent_client.get("/api/schema?format=json", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200, "the schema page itself is not described by the schema"
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    params = {p["name"]: p for p in document["paths"]["/api/bug-reports/"]["get"]["parameters"]}
    assert params["status"]["schema"]["type"] == "array"
    assert {"open", "done"} <= set(params["status"]["schema"]["items"]["enum"])
    assert params["severity"]["schema"]["type"] == "array"


def test_literal_paths_win_over_templates():
    table = operations_table(
        {
            "paths": {
                "/api/r/{id}/": {"get": {"responses": {}, "parameters": []}},
                "/api/r/summary/": {
                    "get": {"responses": {}, "parameters": [{"in": "query", "name": "x"}]}
                },
            }
        }
    )
    matches = [ops["GET"].params for regex, ops in table if regex.match("/api/r/summary")]
    assert matches[0] == frozenset({"x"})


def test_the_docs_page_links_to_the_agent_guide_which_explains_the_loop(api_client):
    from drf_spectacular.generators import SchemaGenerator

    description = SchemaGenerator().get_schema(request=None, public=True)["info"]["description"]
    assert "(/api/docs/agents)" in description
    guide = api_client.get("/api/docs/agents")
    assert guide.status_code == 200 and guide["Content-Type"].startswith("text/markdown")
    text = guide.content.decode()
    for step in ("claim-next", "heartbeat", "resolve", "release", "verify", "curl "):
        assert step in text
    for problem in ("claim-token-required", "claim-token-mismatch", "lease-lost"):
        assert problem in text
    assert api_client.get("/api/docs/nothing").status_code == 404
