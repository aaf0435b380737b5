"""claim-next hands over the compact report and the context bundle in one call."""

import json

import pytest

from reports.context import OUTPUT_TAIL_CHARS
from reports.serializers import COMPACT_FIELDS
from tests.factories import failed_worker_run, make_report

from .big import heavy_report

CLAIM_NEXT = "/api/bug-reports/claim-next"
pytestmark = pytest.mark.django_db


def test_one_call_from_give_me_work_to_i_know_enough_within_16000_chars(
    agent_client, other_agent_client
):
    report = heavy_report(notes=200, duplicates=30)  # a 200 KB trace
    response = agent_client.post(CLAIM_NEXT, {"view": "compact", "context": True}, format="json")
    assert response.status_code == 200
    text = response.content.decode()
    assert len(text) <= 16_000
    body = json.loads(text)
    assert body["claim_token"] and set(body["report"]) == set(COMPACT_FIELDS)
    assert body["report"]["id"] == str(report.pk)
    bundle = body["context"]
    assert len(json.dumps(bundle, ensure_ascii=False, separators=(",", ":"))) <= 12_000
    # The bundle is read after the claim: it shows the report as this agent now holds it.
    assert bundle["report"]["status"] == "in_progress"
    assert bundle["report"]["claim"]["holder"] == "agent-1"
    assert bundle["notes"]["total"] == 200 and bundle["frames"][0]["path"] == "billing7/models.py"
    # Without them, the same claim would have cost the whole trace.
    agent_client.post(
        f"/api/bug-reports/{report.pk}/release",
        {},
        format="json",
        HTTP_X_CLAIM_TOKEN=body["claim_token"],
    )
    # Another agent: the releaser is not handed its report back within RECLAIM_COOLDOWN.
    full = other_agent_client.post(CLAIM_NEXT, {}, format="json")
    assert len(full.content) > 200_000 and "context" not in full.json()


def test_max_chars_shapes_the_bundle_and_needs_context(agent_client):
    heavy_report(notes=50, duplicates=3)
    response = agent_client.post(CLAIM_NEXT, {"max_chars": 2000}, format="json")
    assert response.status_code == 400 and "max_chars" in response.json()["errors"]
    for bad in ({"context": True, "max_chars": 999}, {"view": "tiny"}, {"context": "yes"}):
        response = agent_client.post(CLAIM_NEXT, bad, format="json")
        assert response.status_code == 400, bad
        assert set(response.json()["errors"]) <= {"max_chars", "view", "context"}
    response = agent_client.post(CLAIM_NEXT, {"context": True, "max_chars": 2000}, format="json")
    assert response.status_code == 200
    bundle = response.json()["context"]
    assert bundle["max_chars"] == 2000
    assert len(json.dumps(bundle, ensure_ascii=False, separators=(",", ":"))) <= 2000


def test_nothing_to_claim_is_still_204_with_context(agent_client):
    response = agent_client.post(CLAIM_NEXT, {"context": True}, format="json")
    assert response.status_code == 204


def test_component_category_and_severity_take_comma_lists(agent_client):
    wanted = [
        make_report(component="billing", category="crash", severity="low"),
        make_report(component="search", category="crash", severity="high"),
    ]
    make_report(component="auth", category="crash", severity="critical")
    make_report(component="billing", category="perf", severity="critical")
    body = {"component": "billing, search", "category": ["crash"], "severity": "low,high,medium"}
    got = [agent_client.post(CLAIM_NEXT, body, format="json") for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 204]
    assert {r.json()["report"]["id"] for r in got[:2]} == {str(r.pk) for r in wanted}
    bad = agent_client.post(CLAIM_NEXT, {"severity": "high,urgent"}, format="json")
    assert bad.status_code == 400
    assert [key.split(".")[0] for key in bad.json()["errors"]] == ["severity"]


def test_the_next_claimer_reads_why_the_earlier_attempts_ended_newest_first(
    agent_client, other_agent_client, settings
):
    settings.RETRY_COOLDOWN = 0  # the cooldowns below end at once
    report = make_report(automation_enabled=True)
    # A worker run that failed, then an agent that hit a wall in its environment.
    output = "collected 12 items\n" + "." * 2000 + "\nFAILED tests/test_pay.py::test_total"
    assert failed_worker_run(exit_code=3, output_tail=output, error="Exited with 3.") == report
    taken = agent_client.post(CLAIM_NEXT, {}, format="json").json()
    released = agent_client.post(
        f"/api/bug-reports/{report.pk}/release",
        {"reason": "env_error", "note": "The test database refuses connections."},
        format="json",
        HTTP_X_CLAIM_TOKEN=taken["claim_token"],
    )
    assert released.status_code == 200

    body = other_agent_client.post(CLAIM_NEXT, {"context": True}, format="json").json()
    assert body["report"]["id"] == str(report.pk)
    attempts = body["context"]["attempts"]
    assert [(a["holder"], a["claim_epoch"], a["outcome"]) for a in attempts] == [
        ("agent-2", 3, "running"),  # this claim
        ("agent-1", 2, "released"),
        ("worker:h:1", 1, "failed"),
    ]
    mine, agents, workers = attempts
    assert mine["ended_at"] is None and mine["exit_code"] is None
    assert (agents["reason"], agents["note"]) == (
        "env_error",
        "The test database refuses connections.",
    )
    assert agents["ended_at"] and "output_tail" not in agents
    assert (workers["exit_code"], workers["note"]) == (3, "Exited with 3.")
    assert workers["output_tail"].endswith("....\nFAILED tests/test_pay.py::test_total")
    assert len(workers["output_tail"]) == OUTPUT_TAIL_CHARS
