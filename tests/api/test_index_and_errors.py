"""`GET /api/` lists the entry points; every answer is problem+json, under DEBUG too."""

import logging

import pytest
from django.test import override_settings

from bugtracker import health

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.django_db


def test_the_index_lists_every_entry_point_of_the_schema(api_client):
    response = api_client.get("/api/")
    assert response.status_code == 200
    index = response.json()
    assert (index["schema"], index["docs"]) == ("/api/schema", "/api/docs")
    schema = api_client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    listed = {entry["path"]: entry["operations"] for entry in index["entry_points"]}
    assert set(listed) == {path.rstrip("/") for path in schema["paths"]}
    submit = next(op for op in listed["/api/bug-reports"] if op["method"] == "POST")
    assert submit["summary"] and "anonymous" in submit["roles"]
    status = listed["/api/admin/status"][0]
    assert (status["method"], status["roles"]) == ("GET", ["admin"])
    assert api_client.get("/api").json() == index  # with or without the slash


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/", "/api/bugs", "/api/bug-reports/x/y/z", "/nothing/here"])
def test_an_unknown_url_is_a_404_problem_in_debug_too(api_client, debug, path):
    with override_settings(DEBUG=debug):
        response = api_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert response.json()["detail"].startswith(f"No such resource: {path}.")
    assert b"<html" not in response.content.lower()


@pytest.mark.parametrize("debug", [False, True])
def test_a_crash_is_a_500_problem_in_debug_too_and_logged_with_its_traceback(
    api_client, monkeypatch, caplog, debug
):
    def crash(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(health.HealthView, "get", crash)
    api_client.raise_request_exception = False
    with override_settings(DEBUG=debug), caplog.at_level(logging.ERROR, logger="django.request"):
        response = api_client.get("/api/health")
    assert response.status_code == 500
    assert response["Content-Type"] == PROBLEM
    assert b"boom" not in response.content and b"Traceback" not in response.content
    (logged,) = [r for r in caplog.records if r.name == "django.request"]
    assert logged.exc_info and "RuntimeError: boom" in caplog.text
