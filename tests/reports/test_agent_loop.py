"""The agent work loop through the API: token problems, re-claim, release reasons,
attempts, evidence and verification (design: "Claims, attempts and verification")."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reports.models import BugReport, BugReportEvent
from tests.conftest import client_for
from tests.factories import failed_worker_run, make_report

pytestmark = pytest.mark.django_db

URL = "/api/bug-reports"
PROBLEM = "urn:bugtracker:problem:"


def claim(client, report, **body):
    return client.post(f"{URL}/{report.pk}/claim", body, format="json")


def claim_next(client, **body):
    return client.post(f"{URL}/claim-next", body, format="json")


def post(client, report, what, body=None, token=None):
    headers = {"HTTP_X_CLAIM_TOKEN": token} if token else {}
    return client.post(f"{URL}/{report.pk}/{what}", body or {}, format="json", **headers)


def expire(report):
    BugReport.objects.filter(pk=report.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )


def attempts(client, report):
    response = client.get(f"{URL}/{report.pk}/attempts")
    assert response.status_code == 200
    return response.json()["results"]


# Token problems --------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["heartbeat", "release", "resolve"])
def test_a_write_without_the_token_on_a_live_claim_is_428_not_lease_lost(agent_client, what):
    report = make_report()
    claim(agent_client, report)
    response = post(agent_client, report, what)
    assert response.status_code == 428
    assert response.json()["type"] == PROBLEM + "claim-token-required"
    assert BugReport.objects.get(pk=report.pk).claim_holder == "agent-1", "the claim is fine"


@pytest.mark.parametrize("what", ["heartbeat", "release", "resolve", "events"])
def test_a_wrong_token_on_a_live_claim_is_claim_token_mismatch(agent_client, what):
    report = make_report()
    claim(agent_client, report)
    body = {"message": "hi"} if what == "events" else None
    response = post(agent_client, report, what, body, token="not-the-token")
    assert response.status_code == 409
    assert response.json()["type"] == PROBLEM + "claim-token-mismatch"


def test_patch_and_notes_without_the_token_are_428(agent_client, other_agent_client):
    report = make_report()
    claim(agent_client, report)
    patch = other_agent_client.patch(f"{URL}/{report.pk}", {"category": "x"}, format="json")
    note = post(other_agent_client, report, "events", {"message": "me too"})
    assert (patch.status_code, note.status_code) == (428, 428)


@pytest.mark.parametrize("what", ["heartbeat", "release", "resolve"])
def test_an_expired_or_taken_over_lease_is_lease_lost(agent_client, other_agent_client, what):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    expire(report)
    expired = post(agent_client, report, what, token=token)
    assert expired.status_code == 409
    assert expired.json()["type"] == PROBLEM + "lease-lost"

    claim(other_agent_client, report)
    taken = post(agent_client, report, what, token=token)
    assert taken.status_code == 409
    assert taken.json()["type"] == PROBLEM + "lease-lost"


# Re-claim, epoch, heartbeat ---------------------------------------------------------------


def test_a_restarted_agent_recovers_by_re_claim_and_its_old_token_is_refused(agent_client):
    report = make_report()
    first = claim(agent_client, report, lease_seconds=60).json()
    assert first["claim_epoch"] == 1 and first["report"]["claim"]["epoch"] == 1

    again = claim(agent_client, report, lease_seconds=900)
    assert again.status_code == 200
    second = again.json()
    assert second["claim_token"] != first["claim_token"]
    assert second["claim_epoch"] == 2 and second["report"]["claim"]["epoch"] == 2
    assert second["claim_expires_at"] > first["claim_expires_at"]

    old = post(agent_client, report, "heartbeat", token=first["claim_token"])
    assert old.status_code == 409 and old.json()["type"] == PROBLEM + "lease-lost"
    assert post(agent_client, report, "heartbeat", token=second["claim_token"]).status_code == 200
    kinds = list(BugReport.objects.get(pk=report.pk).events.values_list("kind", flat=True))
    assert kinds[-2:] == ["claimed", "claim_renewed"]
    outcomes = [(a["claim_epoch"], a["outcome"]) for a in attempts(agent_client, report)]
    assert outcomes == [(1, "taken_over"), (2, "running")]


def test_someone_else_still_cannot_claim_a_live_claim(agent_client, other_agent_client):
    report = make_report()
    claim(agent_client, report)
    assert claim(other_agent_client, report).status_code == 409


def test_a_heartbeat_keeps_the_version_so_the_holders_if_match_patch_succeeds(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    etag = agent_client.get(f"{URL}/{report.pk}")["ETag"]
    beat = post(agent_client, report, "heartbeat", {"lease_seconds": 600}, token=token)
    assert beat.status_code == 200 and beat["ETag"] == etag
    patch = agent_client.patch(
        f"{URL}/{report.pk}",
        {"category": "db"},
        format="json",
        HTTP_IF_MATCH=etag,
        HTTP_X_CLAIM_TOKEN=token,
    )
    assert patch.status_code == 200


# Release reasons --------------------------------------------------------------------------


def test_release_clears_claim_and_assignee_and_keeps_the_reason(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    response = post(
        agent_client, report, "release", {"reason": "too_big", "note": "a rewrite"}, token
    )
    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["claim"], body["assignee_id"]) == ("triaged", None, None)
    assert body["needs_human"] is False
    [attempt] = attempts(agent_client, report)
    assert (attempt["outcome"], attempt["reason"], attempt["note"]) == (
        "released",
        "too_big",
        "a rewrite",
    )


def test_an_unknown_release_reason_is_a_400_naming_it(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    response = post(agent_client, report, "release", {"reason": "bored"}, token)
    assert response.status_code == 400 and "reason" in response.json()["errors"]


def test_needs_info_takes_a_report_out_of_claim_next_until_an_admin_clears_it(
    agent_client, other_agent_client, admin_client
):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    post(agent_client, report, "release", {"reason": "needs_info", "note": "which db?"}, token)
    assert BugReport.objects.get(pk=report.pk).needs_human
    assert claim_next(other_agent_client).status_code == 204
    listed = other_agent_client.get(f"{URL}?needs_human=true").json()["results"]
    assert [r["id"] for r in listed] == [str(report.pk)]

    # An agent may not clear it; an admin may.
    refused = other_agent_client.patch(f"{URL}/{report.pk}", {"needs_human": False}, format="json")
    assert refused.status_code == 403 and refused.json()["required_role"] == "admin"
    cleared = admin_client.patch(f"{URL}/{report.pk}", {"needs_human": False}, format="json")
    assert cleared.status_code == 200 and cleared.json()["needs_human"] is False
    again = claim_next(other_agent_client)
    assert again.status_code == 200 and again.json()["report"]["id"] == str(report.pk)


def test_clearing_needs_human_over_a_cooldown_records_it_in_the_history(admin_client):
    """Clearing needs_human also clears next_attempt_at: a datetime in the field-change event
    (this was a 500, found by schemathesis)."""
    report = make_report()
    cooldown = timezone.now() + timedelta(hours=1)
    BugReport.objects.filter(pk=report.pk).update(needs_human=True, next_attempt_at=cooldown)
    cleared = admin_client.patch(f"{URL}/{report.pk}", {"needs_human": False}, format="json")
    assert cleared.status_code == 200 and cleared.json()["next_attempt_at"] is None
    (event,) = BugReportEvent.objects.filter(
        report=report, kind="field_changed", data__field="next_attempt_at"
    )
    assert event.data["from"] == cooldown.isoformat() and event.data["to"] is None


def test_not_a_bug_needs_a_human_too_and_is_counted_in_the_summary(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    post(agent_client, report, "release", {"reason": "not_a_bug"}, token)
    assert agent_client.get(f"{URL}/summary").json()["needs_human"] == 1


def test_the_releaser_does_not_get_it_back_within_the_cooldown_while_another_agent_does(
    agent_client, other_agent_client, settings
):
    settings.RECLAIM_COOLDOWN = 3600
    report = make_report()
    token = claim_next(agent_client).json()["claim_token"]
    post(agent_client, report, "release", {"reason": "cannot_reproduce"}, token)
    assert claim_next(agent_client).status_code == 204
    taken = claim_next(other_agent_client)
    assert taken.status_code == 200 and taken.json()["report"]["id"] == str(report.pk)


def test_the_releaser_gets_it_back_after_the_cooldown(agent_client, settings):
    settings.RECLAIM_COOLDOWN = 0
    report = make_report()
    token = claim_next(agent_client).json()["claim_token"]
    post(agent_client, report, "release", {}, token)
    assert claim_next(agent_client).json()["report"]["id"] == str(report.pk)


def test_env_error_sets_a_growing_cooldown_and_does_not_count_as_an_attempt(
    agent_client, other_agent_client, settings
):
    settings.RETRY_COOLDOWN = 100
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    first = post(agent_client, report, "release", {"reason": "env_error"}, token).json()
    assert first["attempts"] == 0 and first["needs_human"] is False
    assert claim_next(other_agent_client).status_code == 204, "cooling down"
    delay1 = BugReport.objects.get(pk=report.pk).next_attempt_at - timezone.now()

    token = claim(other_agent_client, report).json()["claim_token"]
    post(other_agent_client, report, "release", {"reason": "env_error"}, token)
    delay2 = BugReport.objects.get(pk=report.pk).next_attempt_at - timezone.now()
    assert timedelta(seconds=90) < delay1 <= timedelta(seconds=111)
    assert timedelta(seconds=190) < delay2 <= timedelta(seconds=221)


def test_max_attempts_without_a_fix_set_needs_human(agent_client, other_agent_client, settings):
    settings.MAX_ATTEMPTS = 2
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    expire(report)  # the first attempt ends as expired when the next claim notices it
    token = claim(other_agent_client, report).json()["claim_token"]
    body = post(other_agent_client, report, "release", {"reason": "too_big"}, token).json()
    assert body["attempts"] == 2 and body["needs_human"] is True
    kinds = BugReport.objects.get(pk=report.pk).events.values_list("kind", flat=True)
    assert "needs_human" in kinds


# Attempts ---------------------------------------------------------------------------------


def test_the_attempt_list_shows_expired_released_worker_and_resolved_in_order(
    agent_client, other_agent_client, settings
):
    settings.RETRY_COOLDOWN = 0
    report = make_report(automation_enabled=True)
    claim(agent_client, report)
    expire(report)
    token = claim(other_agent_client, report).json()["claim_token"]
    post(other_agent_client, report, "release", {"reason": "cannot_reproduce", "note": "?"}, token)
    BugReport.objects.filter(pk=report.pk).update(next_attempt_at=None)

    assert failed_worker_run(exit_code=3, output_tail="boom", error="Exited with 3.") == report
    token = claim(agent_client, report).json()["claim_token"]
    post(agent_client, report, "resolve", {"resolution_notes": "fixed"}, token)

    rows = attempts(agent_client, report)
    assert [(a["holder"], a["outcome"], a["reason"]) for a in rows] == [
        ("agent-1", "expired", ""),
        ("agent-2", "released", "cannot_reproduce"),
        ("worker:h:1", "failed", ""),
        ("agent-1", "resolved", ""),
    ]
    assert [a["claim_epoch"] for a in rows] == [1, 2, 3, 4]
    assert (rows[2]["exit_code"], rows[2]["output_tail"]) == (3, "boom")
    assert rows[2]["note"] == "Exited with 3."  # the run's error says why it failed
    assert all(a["ended_at"] for a in rows)
    # /runs keeps answering as before.
    runs = agent_client.get(f"{URL}/{report.pk}/runs").json()["results"]
    assert [r["outcome"] for r in runs] == ["failed"]


def test_attempts_are_cursor_paginated_and_cheap(
    agent_client, django_assert_max_num_queries, settings
):
    settings.RECLAIM_COOLDOWN = 0
    report = make_report()
    for _ in range(5):
        token = claim(agent_client, report).json()["claim_token"]
        post(agent_client, report, "release", {"reason": "env_error"}, token)
        BugReport.objects.filter(pk=report.pk).update(next_attempt_at=None)
    with django_assert_max_num_queries(6):
        page = agent_client.get(f"{URL}/{report.pk}/attempts?page_size=2").json()
    assert len(page["results"]) == 2 and page["next"]
    seen = [a["claim_epoch"] for a in page["results"]]
    while page["next"]:
        page = agent_client.get(page["next"]).json()
        seen += [a["claim_epoch"] for a in page["results"]]
    assert seen == [1, 2, 3, 4, 5]
    assert agent_client.get(f"{URL}/not-a-uuid/attempts").status_code == 404


# Evidence and verification ----------------------------------------------------------------


def fixed_for_verification(client, report, notes="Added retry with backoff"):
    token = claim(client, report).json()["claim_token"]
    body = {
        "resolution_notes": notes,
        "verify": True,
        "pr_url": "https://git.example/pr/7",
        "tests": ["tests/test_db.py::test_retry"],
    }
    response = post(client, report, "resolve", body, token)
    assert response.status_code == 200, response.json()
    return response.json()


def test_resolve_keeps_its_evidence(agent_client):
    report = make_report()
    body = fixed_for_verification(agent_client, report)
    assert body["status"] == "awaiting_verification"
    assert body["pr_url"] == "https://git.example/pr/7"
    assert body["tests"] == ["tests/test_db.py::test_retry"]
    assert body["resolved_by"] == "agent-1"


@pytest.mark.parametrize(
    "evidence",
    [{"pr_url": "ftp://x/y"}, {"pr_url": "not a url"}, {"tests": [f"t{i}" for i in range(51)]}],
)
def test_bad_evidence_is_a_400_naming_the_field(agent_client, evidence):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    response = post(agent_client, report, "resolve", evidence, token)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == set(evidence)
    assert BugReport.objects.get(pk=report.pk).status == "in_progress", "nothing written"


def test_verify_passed_keeps_the_fixers_notes(agent_client, other_agent_client):
    report = make_report()
    fixed_for_verification(agent_client, report)
    offered = claim_next(other_agent_client, purpose="verify")
    assert offered.status_code == 200 and offered.json()["report"]["id"] == str(report.pk)
    assert offered.json()["report"]["status"] == "awaiting_verification"
    token = offered.json()["claim_token"]
    response = post(
        other_agent_client,
        report,
        "verify",
        {"outcome": "passed", "note": "verified in staging"},
        token,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "resolved"
    assert body["resolution_notes"] == "Added retry with backoff"
    assert body["verification_notes"] == "verified in staging"
    assert body["verified_by"] == "agent-2" and body["verified_at"]
    events = BugReport.objects.get(pk=report.pk).events.filter(kind="verified")
    assert events.get().message == "verified in staging"


def test_verify_failed_puts_it_back_in_the_pool_and_the_fixer_cannot_verify_its_own_fix(
    agent_client, other_agent_client
):
    report = make_report()
    fixed_for_verification(agent_client, report)
    assert claim_next(agent_client, purpose="verify").status_code == 204, "not its own fix"
    own = post(agent_client, report, "verify", {"outcome": "passed"})
    assert own.status_code == 403 and own.json()["type"] == PROBLEM + "own-fix"

    failed = post(other_agent_client, report, "verify", {"outcome": "failed", "note": "still 500s"})
    body = failed.json()
    assert failed.status_code == 200
    assert (body["status"], body["claim"], body["assignee_id"]) == ("triaged", None, None)
    assert body["resolution_notes"] == "Added retry with backoff"
    assert body["verification_notes"] == "still 500s"
    fix = [a for a in attempts(agent_client, report) if a["outcome"] == "resolved"]
    assert [a["verification"] for a in fix] == ["failed"]
    again = claim_next(other_agent_client)
    assert again.status_code == 200 and again.json()["report"]["id"] == str(report.pk)


def test_an_admin_may_verify_its_own_fix(admin_client):
    report = make_report()
    token = claim(admin_client, report).json()["claim_token"]
    post(admin_client, report, "resolve", {"verify": True}, token)
    assert post(admin_client, report, "verify", {"outcome": "passed"}).status_code == 200


def test_verify_on_a_report_not_awaiting_verification_is_409(agent_client):
    report = make_report()
    response = post(agent_client, report, "verify", {"outcome": "passed"})
    assert response.status_code == 409


# Reporters --------------------------------------------------------------------------------


def test_a_reporter_reads_its_own_reports_and_only_those(db):
    mine = client_for("reporter", "rep-1")
    theirs = client_for("reporter", "rep-2")
    created = mine.post(URL, {"title": "my bug"}, format="json").json()
    make_report(title="someone else's")
    assert mine.get(f"{URL}/{created['id']}").status_code == 200
    assert theirs.get(f"{URL}/{created['id']}").status_code == 404
    assert [r["id"] for r in mine.get(URL).json()["results"]] == [created["id"]]
    assert theirs.get(URL).json()["results"] == []
    assert mine.post(f"{URL}/claim-next", {}, format="json").status_code == 403
