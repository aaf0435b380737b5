"""The outbox: report changes write their deliveries in their own transaction, on every
write path (the ORM, reports/writes.py's one-statement writes, the PostgreSQL claim)."""

import pytest
from django.db import transaction

from reports.claims import report_claim_next, report_release, report_resolve
from tests.factories import make_report
from webhooks import services
from webhooks.dispatcher import WebhookDispatcher
from webhooks.models import WebhookDelivery

from .conftest import wait_until

ALL_REPORT_TYPES = [
    "report.created",
    "report.regressed",
    "report.claimed",
    "report.released",
    "report.resolved",
    "automation.disabled",
]


def told(report=None):
    rows = WebhookDelivery.objects.order_by("created_at", "id")
    if report is not None:
        rows = rows.filter(report_id=report.pk)
    return list(rows.values_list("event_type", flat=True))


@pytest.fixture
def subscribed(webhook_settings):
    return services.webhook_create(
        url="http://127.0.0.1:9/hook", event_types=ALL_REPORT_TYPES, actor="tests"
    )


@pytest.mark.django_db
def test_a_submission_tells_report_created_and_a_duplicate_does_not(subscribed, agent_client):
    body = {"title": "Checkout fails", "component": "checkout", "route": "/pay"}
    first = agent_client.post("/api/bug-reports", body, format="json")
    second = agent_client.post("/api/bug-reports", body, format="json")
    assert first.status_code == second.status_code == 201
    assert second.json()["duplicate_of"] == first.json()["id"]
    rows = list(WebhookDelivery.objects.values_list("event_type", "report_id"))
    assert [(kind, str(report_id)) for kind, report_id in rows] == [
        ("report.created", first.json()["id"])
    ]


@pytest.mark.django_db
def test_claim_release_and_resolve_are_told(subscribed):
    report = make_report()
    claimed, token = report_claim_next(actor="agent-1")  # the one-statement claim on PostgreSQL
    assert claimed.pk == report.pk
    report_release(report_id=report.pk, actor="agent-1", claim_token=token)
    _, token = report_claim_next(actor="agent-1")
    report_resolve(report_id=report.pk, actor="agent-1", claim_token=token, resolution_notes="x")
    assert told(report) == [
        "report.created",
        "report.claimed",
        "report.released",
        "report.claimed",
        "report.resolved",
    ]


@pytest.mark.django_db
def test_nothing_is_written_without_a_subscription_to_the_type(webhook_settings):
    services.webhook_create(
        url="http://127.0.0.1:9/hook", event_types=["backlog.alert"], actor="tests"
    )
    inactive = services.webhook_create(
        url="http://127.0.0.1:9/hook", event_types=["report.created"], actor="tests"
    )
    services.webhook_update(webhook_id=inactive.pk, data={"active": False})
    make_report()
    report_claim_next(actor="agent-1")
    assert told() == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_sends_nothing(receiver, webhook_settings):
    services.webhook_create(url=receiver.url, event_types=ALL_REPORT_TYPES, actor="tests")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_report(title="Never committed")
        assert told() == ["report.created"]  # written, inside the transaction
        raise RuntimeError("the change fails after its event was written")
    assert told() == []
    committed = make_report(title="Committed")
    dispatcher = WebhookDispatcher(threads=1, poll_seconds=0.05, alert_seconds=3600)
    dispatcher.start()
    try:
        wait_until(lambda: receiver.requests)
        dispatcher.queue.wait_idle(5)
    finally:
        dispatcher.stop(deadline=5)
    assert len(receiver.requests) == 1
    assert str(committed.pk) in receiver.requests[0].body.decode()
    assert "Never committed" not in receiver.requests[0].body.decode()


@pytest.mark.django_db
def test_resolving_by_hand_and_a_regression_are_told(subscribed, admin_client, agent_client):
    body = {"title": "Search times out", "component": "search", "route": "/search"}
    first = {**body, "release_sha": "1" * 40}
    report_id = agent_client.post("/api/bug-reports", first, format="json").json()["id"]
    resolved = admin_client.patch(
        f"/api/bug-reports/{report_id}", {"status": "resolved"}, format="json"
    )
    assert resolved.status_code == 200, resolved.content
    # A release the group had not seen: a regression, not a stale occurrence.
    again = agent_client.post("/api/bug-reports", {**body, "release_sha": "2" * 40}, format="json")
    assert again.json()["duplicate_of"] == report_id
    assert agent_client.get(f"/api/bug-reports/{report_id}").json()["status"] != "resolved"
    rows = WebhookDelivery.objects.order_by("created_at", "id").values_list(
        "event_type", "report_id"
    )
    assert [(kind, str(rid)) for kind, rid in rows] == [
        ("report.created", report_id),
        ("report.resolved", report_id),
        ("report.regressed", report_id),
    ]
