"""Deliveries to a real HTTP receiver on loopback: signed, retried, turned off, guarded."""

import json
import socket
import unittest.mock
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook as Verifier

from reports.models import BugReport
from tests.factories import make_report
from webhooks import services
from webhooks.dispatcher import WebhookDispatcher
from webhooks.models import DeliveryStatus, Webhook, WebhookDelivery

from .conftest import wait_until

live = pytest.mark.django_db(transaction=True)


def subscribe(url, types=("report.created",)):
    return services.webhook_create(url=url, event_types=list(types), actor="tests")


def run_dispatcher(until, seconds=20.0):
    dispatcher = WebhookDispatcher(threads=2, poll_seconds=0.05, alert_seconds=3600)
    dispatcher.start()
    try:
        return wait_until(until, seconds)
    finally:
        dispatcher.stop(deadline=5)


@live
def test_a_delivery_is_signed_and_verifies_with_the_standard_library(
    receiver, webhook_settings, agent_client
):
    webhook = subscribe(receiver.url)
    trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "/srv/app/pkg/mod{i}.py", line 3, in f{i}\n    x()\n' for i in range(5)
    )
    # Its outbox row comes with it.
    report = make_report(title="Checkout crashes", severity="high", stack_trace=trace + "E: no\n")
    run_dispatcher(lambda: receiver.requests)
    request = receiver.requests[0]
    assert request.path == "/hooks/bt"
    payload = Verifier(webhook.secret).verify(request.body, request.headers)
    assert payload["type"] == "report.created"
    assert payload["data"]["report"]["id"] == str(report.pk)
    assert payload["data"]["report"]["title"] == "Checkout crashes"
    # The report as the API's compact view shows it (one definition: REPORT_VIEWS["compact"]).
    shown = agent_client.get(f"/api/bug-reports/{report.pk}?view=compact").json()
    assert payload["data"]["report"] == shown
    assert payload["data"]["report"]["repo_hints"] == ["pkg/mod4.py", "pkg/mod3.py", "pkg/mod2.py"]
    delivery = WebhookDelivery.objects.get()
    assert request.headers["webhook-id"] == delivery.message_id
    assert delivery.status == DeliveryStatus.SUCCEEDED
    # Another secret does not verify it.
    with pytest.raises(Exception, match="signature"):
        Verifier(services.new_secret()).verify(request.body, request.headers)


@live
def test_three_500s_then_a_200_delivers_on_the_fourth_try(receiver, webhook_settings, admin_client):
    receiver.statuses = [500, 500, 500]
    webhook = subscribe(receiver.url)
    make_report()
    run_dispatcher(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).exists())
    assert len(receiver.requests) == 4
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1  # the same bytes on every try
    log = admin_client.get(f"/api/webhooks/{webhook.pk}/deliveries").json()["results"]
    assert [a["response_status"] for a in log[0]["attempts"]] == [500, 500, 500, 200]
    assert log[0]["status"] == "succeeded"


@live
def test_deliveries_taken_together_share_one_connection(webhook_settings):
    from webhooks.sending import Connections

    from .receiver import Receiver

    receiver = Receiver(keep_alive=True).start()
    opened = []
    original = Connections.get

    def counting_get(self, target, timeout):
        connection, reused = original(self, target, timeout)
        opened.append(reused)
        return connection, reused

    try:
        webhook = subscribe(receiver.url)
        for n in range(5):
            make_report(title=f"Keep-alive {n} crash", component=f"c{n}")
        ids = services.deliveries_claim_due(limit=10)
        assert len(ids) == 5
        with unittest.mock.patch.object(Connections, "get", counting_get):
            assert services.deliveries_attempt(delivery_ids=ids) == 5
    finally:
        receiver.stop()
    assert len(receiver.requests) == 5
    assert len({r.client_port for r in receiver.requests}) == 1
    assert opened == [False, True, True, True, True]
    for request in receiver.requests:
        Verifier(webhook.secret).verify(request.body, request.headers)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


@live
def test_tries_stop_at_webhook_max_attempts(receiver, webhook_settings):
    webhook_settings.WEBHOOK_MAX_ATTEMPTS = 3
    receiver.statuses = [503] * 10
    subscribe(receiver.url)
    make_report()
    run_dispatcher(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.FAILED).exists())
    assert len(receiver.requests) == 3
    assert WebhookDelivery.objects.get().attempts == 3


@live
def test_an_endpoint_failing_too_long_is_turned_off_with_an_event(receiver, webhook_settings):
    from .receiver import Receiver

    webhook_settings.WEBHOOK_DISABLE_AFTER_HOURS = 0.5 / 3600  # half a second
    webhook_settings.WEBHOOK_MAX_ATTEMPTS = 100
    webhook_settings.WEBHOOK_RETRY_SECONDS = 0.2
    failing = Receiver(statuses=[500] * 1000).start()
    try:
        broken = subscribe(failing.url)
        watcher = subscribe(receiver.url, types=["webhook.disabled"])
        make_report()
        run_dispatcher(lambda: receiver.requests)
    finally:
        failing.stop()
    broken.refresh_from_db()
    assert broken.active is False and broken.disabled_at is not None
    assert "failed" in broken.disabled_reason
    told = Verifier(watcher.secret).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert told["type"] == "webhook.disabled"
    assert told["data"]["webhook"]["id"] == str(broken.pk)
    assert WebhookDelivery.objects.get(webhook=broken).status == DeliveryStatus.FAILED


@live
def test_a_url_resolving_to_a_private_address_is_refused_at_delivery(webhook_settings, monkeypatch):
    """DNS answers a public address at registration, then the cloud metadata address: the
    try is refused before any connection (every connect in this test raises)."""
    webhook_settings.WEBHOOK_ALLOW_PRIVATE = False
    webhook_settings.WEBHOOK_MAX_ATTEMPTS = 1
    answers = {"hooks.example.test": "93.184.216.34"}
    connects = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    def no_connect(*args, **kwargs):
        connects.append(args)
        raise AssertionError("a connection left the guard")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", no_connect)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    webhook = subscribe("https://hooks.example.test/bt")
    for address in ("10.0.0.1", "169.254.169.254"):
        answers["hooks.example.test"] = address
        report = make_report()
        delivery = WebhookDelivery.objects.get(report_id=report.pk)
        assert services.deliveries_claim_due(limit=10) == [delivery.pk]
        assert services.delivery_attempt(delivery_id=delivery.pk) is False
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED
        error = delivery.tries.get().error
        assert error.startswith("Refused") and address in error
    assert connects == []
    # Registering a name that resolves there is refused outright.
    answers["hooks.example.test"] = "10.0.0.1"
    with pytest.raises(Exception, match="private"):
        subscribe("http://hooks.example.test/")
    assert Webhook.objects.count() == 1 and webhook.pk


@live
def test_sla_breaches_and_backlog_alerts_fire_once_per_crossing(receiver, webhook_settings):
    webhook_settings.BACKLOG_ALERT_MAX_OPEN = 2
    subscribe(receiver.url, types=["sla.breached", "backlog.alert"])
    late = make_report(severity="critical")
    BugReport.objects.filter(pk=late.pk).update(sla_due_at=timezone.now() - timedelta(minutes=1))
    make_report()
    assert services.alerts_scan() == 1  # the breach; two open reports are not over 2
    assert services.alerts_scan() == 0
    third = make_report()
    assert services.alerts_scan() == 1  # the backlog alert starts firing
    assert services.alerts_scan() == 0
    BugReport.objects.filter(pk=third.pk).update(status="closed")
    assert services.alerts_scan() == 0  # stops firing: forgotten
    make_report()
    assert services.alerts_scan() == 1  # and fires again
    types = list(
        WebhookDelivery.objects.order_by("created_at").values_list("event_type", flat=True)
    )
    assert types == ["sla.breached", "backlog.alert", "backlog.alert"]
    # A severity change moves the due time: a new crossing.
    BugReport.objects.filter(pk=late.pk).update(sla_due_at=timezone.now() - timedelta(seconds=5))
    assert services.alerts_scan() == 1
    run_dispatcher(lambda: len(receiver.requests) == 4)
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert {b["type"] for b in bodies} == {"sla.breached", "backlog.alert"}
    alert = next(b for b in bodies if b["type"] == "backlog.alert")
    assert alert["data"]["alert"] == "max_open" and "3 open incidents" in alert["data"]["message"]
