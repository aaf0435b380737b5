import json
from datetime import timedelta

import pytest
from django.utils import timezone

from reports import claims
from reports.models import BugReport
from tests.factories import make_report

pytestmark = pytest.mark.django_db

URL = "/api/bug-reports"


def claim(client, report, **body):
    return client.post(f"{URL}/{report.pk}/claim", body, format="json")


def expire(report):
    BugReport.objects.filter(pk=report.pk).update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_claim_returns_token_and_moves_report_to_in_progress(agent_client):
    report = make_report()
    response = claim(agent_client, report, lease_seconds=60)
    assert response.status_code == 200
    body = response.json()
    assert body["claim_token"]
    assert body["report"]["status"] == "in_progress"
    assert body["report"]["assignee_id"] == "agent-1"
    assert body["report"]["claim"]["holder"] == "agent-1"
    stored = BugReport.objects.get(pk=report.pk)
    assert stored.claim_token_hash != body["claim_token"]
    assert stored.events.filter(kind="claimed", actor="agent-1").exists()
    expires = stored.claim_expires_at - timezone.now()
    assert timedelta(seconds=50) < expires <= timedelta(seconds=60)


def test_claim_is_exclusive(agent_client, other_agent_client):
    report = make_report()
    assert claim(agent_client, report).status_code == 200
    second = claim(other_agent_client, report)
    assert second.status_code == 409
    assert second.json()["holder"] == "agent-1"


def test_expired_lease_can_be_taken_over_and_is_logged(agent_client, other_agent_client):
    report = make_report()
    claim(agent_client, report)
    expire(report)
    assert agent_client.get(f"{URL}/{report.pk}").json()["claim"] is None
    takeover = claim(other_agent_client, report)
    assert takeover.status_code == 200
    assert takeover.json()["report"]["claim"]["holder"] == "agent-2"
    kinds = list(BugReport.objects.get(pk=report.pk).events.values_list("kind", flat=True))
    assert kinds[-2:] == ["lease_expired", "claimed"]


@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_done_reports_cannot_be_claimed(agent_client, status):
    report = make_report()
    BugReport.objects.filter(pk=report.pk).update(status=status)
    assert claim(agent_client, report).status_code == 409


def test_lease_seconds_is_bounded(agent_client):
    report = make_report()
    for bad in (0, 86401, "long"):
        response = claim(agent_client, report, lease_seconds=bad)
        assert response.status_code == 400
        assert "lease_seconds" in response.json()["errors"]


def test_heartbeat_extends_the_lease(agent_client):
    report = make_report()
    token = claim(agent_client, report, lease_seconds=10).json()["claim_token"]
    before = BugReport.objects.get(pk=report.pk).claim_expires_at
    response = agent_client.post(
        f"{URL}/{report.pk}/heartbeat",
        {"lease_seconds": 600},
        format="json",
        HTTP_X_CLAIM_TOKEN=token,
    )
    assert response.status_code == 200
    after = BugReport.objects.get(pk=report.pk).claim_expires_at
    assert after - before > timedelta(seconds=500)


def test_heartbeat_after_the_lease_was_lost_is_409(agent_client, other_agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    expire(report)
    claim(other_agent_client, report)
    response = agent_client.post(
        f"{URL}/{report.pk}/heartbeat", {}, format="json", HTTP_X_CLAIM_TOKEN=token
    )
    assert response.status_code == 409
    assert "lease" in response.json()["detail"].lower()


def test_stale_token_is_refused_for_every_mutation(agent_client, other_agent_client):
    report = make_report()
    stale = claim(agent_client, report).json()["claim_token"]
    expire(report)
    claim(other_agent_client, report)
    headers = {"HTTP_X_CLAIM_TOKEN": stale}
    assert (
        agent_client.patch(
            f"{URL}/{report.pk}", {"severity": "low"}, format="json", **headers
        ).status_code
        == 409
    )
    assert (
        agent_client.post(f"{URL}/{report.pk}/resolve", {}, format="json", **headers).status_code
        == 409
    )
    assert (
        agent_client.post(f"{URL}/{report.pk}/release", {}, format="json", **headers).status_code
        == 409
    )
    assert BugReport.objects.get(pk=report.pk).claim_holder == "agent-2"


def test_patch_on_someone_elses_claim_needs_the_token(agent_client, other_agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    assert (
        other_agent_client.patch(f"{URL}/{report.pk}", {"category": "x"}, format="json").status_code
        == 409
    )
    ok = other_agent_client.patch(
        f"{URL}/{report.pk}", {"category": "x"}, format="json", HTTP_X_CLAIM_TOKEN=token
    )
    assert ok.status_code == 200


def test_release_returns_the_report_to_triaged(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    response = agent_client.post(
        f"{URL}/{report.pk}/release",
        {"note": "cannot reproduce"},
        format="json",
        HTTP_X_CLAIM_TOKEN=token,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "triaged"
    assert response.json()["claim"] is None
    event = BugReport.objects.get(pk=report.pk).events.last()
    assert (event.kind, event.message) == ("released", "cannot reproduce")


def test_resolve_with_notes_and_commits(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    response = agent_client.post(
        f"{URL}/{report.pk}/resolve",
        {"resolution_notes": "fixed the null check", "commit_shas": ["abc1234"]},
        format="json",
        HTTP_X_CLAIM_TOKEN=token,
    )
    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["resolution_notes"], body["commit_shas"]) == (
        "resolved",
        "fixed the null check",
        ["abc1234"],
    )
    assert body["resolved_at"] is not None and body["claim"] is None


def test_resolve_with_verify_awaits_verification(agent_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    response = agent_client.post(
        f"{URL}/{report.pk}/resolve", {"verify": True}, format="json", HTTP_X_CLAIM_TOKEN=token
    )
    assert response.json()["status"] == "awaiting_verification"


def test_resolve_without_a_claim_needs_an_admin(agent_client, admin_client):
    report = make_report()
    assert agent_client.post(f"{URL}/{report.pk}/resolve", {}, format="json").status_code == 409
    assert admin_client.post(f"{URL}/{report.pk}/resolve", {}, format="json").status_code == 200


def test_admin_overrides_a_live_claim(agent_client, admin_client):
    report = make_report()
    claim(agent_client, report)
    assert (
        admin_client.patch(
            f"{URL}/{report.pk}", {"severity": "critical"}, format="json"
        ).status_code
        == 200
    )
    response = admin_client.post(f"{URL}/{report.pk}/release", {}, format="json")
    assert response.status_code == 200
    assert response.json()["claim"] is None


def test_open_duplicates_follow_their_canonical_on_resolve(admin_client):
    canonical = make_report()
    duplicate = make_report()
    BugReport.objects.filter(pk=duplicate.pk).update(duplicate_of=canonical)
    admin_client.post(f"{URL}/{canonical.pk}/resolve", {}, format="json")
    assert BugReport.objects.get(pk=duplicate.pk).status == "resolved"


def test_claim_next_takes_the_highest_priority(agent_client):
    make_report(severity="low")
    critical = make_report(severity="critical")
    response = agent_client.post(f"{URL}/claim-next", {}, format="json")
    assert response.status_code == 200
    assert response.json()["report"]["id"] == str(critical.pk)


def test_claim_next_honours_filters_and_returns_204_when_empty(agent_client):
    make_report(severity="low", component="ui")
    wanted = make_report(severity="medium", component="api")
    response = agent_client.post(
        f"{URL}/claim-next", {"component": "api", "min_severity": "medium"}, format="json"
    )
    assert response.json()["report"]["id"] == str(wanted.pk)
    assert (
        agent_client.post(f"{URL}/claim-next", {"severity": ["high"]}, format="json").status_code
        == 204
    )


def test_claim_next_skips_duplicates_claimed_and_done(agent_client, other_agent_client):
    canonical = make_report(severity="low")
    duplicate = make_report(severity="critical")
    BugReport.objects.filter(pk=duplicate.pk).update(duplicate_of=canonical)
    make_report(severity="critical", status="resolved")
    claimed = make_report(severity="high")
    claim(other_agent_client, claimed)
    response = agent_client.post(f"{URL}/claim-next", {}, format="json")
    assert response.json()["report"]["id"] == str(canonical.pk)
    assert agent_client.post(f"{URL}/claim-next", {}, format="json").status_code == 204


def test_claim_next_takes_over_expired_leases(agent_client, other_agent_client):
    report = make_report()
    old_token = claim(agent_client, report).json()["claim_token"]
    expire(report)
    lapsed_at = BugReport.objects.get(pk=report.pk).claim_expires_at
    response = other_agent_client.post(f"{URL}/claim-next", {"lease_seconds": 120}, format="json")
    body = response.json()
    assert body["report"]["id"] == str(report.pk)
    assert body["report"]["claim"]["holder"] == "agent-2"
    assert body["report"]["version"] == 3
    stored = BugReport.objects.get(pk=report.pk)
    assert stored.claim_holder == "agent-2" and stored.assignee_id == "agent-2"
    expired, claimed = stored.events.order_by("created_at", "id")[2:]
    assert (expired.kind, expired.actor) == ("lease_expired", "system")
    assert expired.data == {"holder": "agent-1", "expired_at": lapsed_at.isoformat()}
    assert expired.message == f"Lease of agent-1 expired at {lapsed_at.isoformat()}."
    assert (claimed.kind, claimed.actor) == ("claimed", "agent-2")
    assert claimed.data == {"from_status": "in_progress", "lease_seconds": 120}
    assert claimed.message == f"Claimed until {stored.claim_expires_at.isoformat()}."
    # The new holder's token works; the old one is refused.
    heartbeat = f"{URL}/{report.pk}/heartbeat"
    new_beat = other_agent_client.post(
        heartbeat, {}, format="json", HTTP_X_CLAIM_TOKEN=body["claim_token"]
    )
    assert new_beat.status_code == 200
    old_beat = agent_client.post(heartbeat, {}, format="json", HTTP_X_CLAIM_TOKEN=old_token)
    assert old_beat.status_code == 409


@pytest.mark.parametrize("by_id", [False, True], ids=["claim-next", "claim"])
def test_the_claim_response_is_what_claim_response_serializer_documents(agent_client, by_id):
    from rest_framework.renderers import JSONRenderer

    from reports.selectors import report_list
    from reports.serializers import ClaimResponseSerializer

    report = make_report()
    if by_id:
        response = claim(agent_client, report)
    else:
        response = agent_client.post(f"{URL}/claim-next", {}, format="json")
    body = response.json()

    stored = report_list().get(pk=report.pk)
    documented = ClaimResponseSerializer(
        {
            "claim_token": body["claim_token"],
            "claim_expires_at": stored.claim_expires_at,
            "report": stored,
        }
    ).data
    assert body == json.loads(JSONRenderer().render(documented))
    assert response["ETag"] == f'"{stored.version}"'


def test_claim_next_without_expired_lease_writes_only_claimed(agent_client):
    report = make_report(status="triaged")
    response = agent_client.post(f"{URL}/claim-next", {}, format="json")
    assert response.status_code == 200
    events = BugReport.objects.get(pk=report.pk).events.order_by("created_at", "id")
    assert [e.kind for e in events][-1] == "claimed"
    assert "lease_expired" not in [e.kind for e in events]
    assert events.last().data == {"from_status": "triaged", "lease_seconds": 900}


def test_token_never_appears_outside_the_claim_response(agent_client, admin_client):
    report = make_report()
    token = claim(agent_client, report).json()["claim_token"]
    stored_hash = BugReport.objects.get(pk=report.pk).claim_token_hash
    agent_client.post(f"{URL}/{report.pk}/events", {"message": "working"}, format="json")
    agent_client.post(f"{URL}/{report.pk}/heartbeat", {}, format="json", HTTP_X_CLAIM_TOKEN=token)
    responses = [
        agent_client.get(f"{URL}/{report.pk}"),
        agent_client.get(URL),
        agent_client.get(f"{URL}/{report.pk}/events"),
        admin_client.patch(f"{URL}/{report.pk}", {"category": "x"}, format="json"),
    ]
    for response in responses:
        text = json.dumps(response.json())
        assert token not in text and stored_hash not in text


def test_lease_sweep_clears_expired_claims_with_an_event(agent_client):
    report = make_report()
    claim(agent_client, report)
    expire(report)
    assert claims.leases_sweep() == 1
    stored = BugReport.objects.get(pk=report.pk)
    assert stored.claim_holder is None
    assert stored.events.last().kind == "lease_expired"
    assert claims.leases_sweep() == 0


def claimed_state(report_id, lapsed_at) -> tuple:
    """A report claimed by agent-1: its columns and the events of that claim, with its
    times named rather than spelled (they differ from run to run)."""
    stored = BugReport.objects.get(pk=report_id)
    times = {stored.claim_expires_at.isoformat(): "<expiry>"}
    if lapsed_at is not None:
        times[lapsed_at.isoformat()] = "<lapsed>"

    def named(value):
        for spelled, name in times.items():
            value = value.replace(spelled, name)
        return value

    events = [
        (
            e.kind,
            e.actor,
            named(e.message),
            {k: named(v) if isinstance(v, str) else v for k, v in e.data.items()},
        )
        for e in stored.events.order_by("created_at", "id")
        if e.kind == "lease_expired" or (e.kind == "claimed" and e.actor == "agent-1")
    ]
    columns = (stored.status, stored.claim_holder, stored.assignee_id, stored.version)
    return columns, events


@pytest.mark.parametrize("lapsed", [False, True], ids=["fresh", "lease-lapsed"])
def test_claim_next_writes_what_a_claim_by_id_writes(agent_client, lapsed):
    """claim-next (one statement on PostgreSQL) and claim by id (the ORM form) are built
    from one description of a claim: the same columns, the same event texts and data."""
    states = []
    for path in ("by-id", "next"):
        report = make_report(status="triaged")
        lapsed_at = None
        if lapsed:
            claims.report_claim(report_id=report.pk, actor="agent-0", lease_seconds=60)
            lapsed_at = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
            BugReport.objects.filter(pk=report.pk).update(claim_expires_at=lapsed_at)
        if path == "by-id":
            claims.report_claim(report_id=report.pk, actor="agent-1", lease_seconds=120)
        else:
            claimed, _ = claims.report_claim_next(actor="agent-1", lease_seconds=120)
            assert claimed.pk == report.pk
        states.append(claimed_state(report.pk, lapsed_at))
        BugReport.objects.filter(pk=report.pk).update(status="closed")  # out of the queue
    by_id, by_statement = states
    assert by_statement == by_id
    kinds = [kind for kind, *_ in by_id[1]]
    assert kinds == (["lease_expired", "claimed"] if lapsed else ["claimed"])
