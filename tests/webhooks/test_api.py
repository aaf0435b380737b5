"""The webhook admin API: subscribe (secret shown once), list, change, delete, deliveries."""

import socket

import pytest

from tests.conftest import THROTTLE_QUERIES
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

pytestmark = pytest.mark.django_db


def subscribe(client, receiver_url="http://127.0.0.1:9/hook", **fields):
    body = {"url": receiver_url, "event_types": ["report.created"], **fields}
    return client.post("/api/webhooks", body, format="json")


def test_subscribe_shows_the_secret_once(admin_client, webhook_settings):
    created = subscribe(admin_client, event_types=["report.created", "sla.breached"])
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["event_types"] == ["report.created", "sla.breached"]
    assert body["active"] is True and body["created_by"] == "admin-1"
    shown = admin_client.get(f"/api/webhooks/{body['id']}").json()
    assert "secret" not in shown and shown["url"] == body["url"]
    listed = admin_client.get("/api/webhooks").json()
    assert [w["id"] for w in listed["results"]] == [body["id"]]
    assert "secret" not in listed["results"][0]


def test_change_and_delete(admin_client, webhook_settings):
    webhook_id = subscribe(admin_client).json()["id"]
    changed = admin_client.patch(
        f"/api/webhooks/{webhook_id}",
        {"active": False, "event_types": ["backlog.alert"]},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["active"] is False
    assert changed.json()["event_types"] == ["backlog.alert"]
    assert admin_client.delete(f"/api/webhooks/{webhook_id}").status_code == 204
    assert admin_client.get(f"/api/webhooks/{webhook_id}").status_code == 404
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:9/", "event_types": ["report.eaten"]}, "event_types.0"),
        ({"url": "http://127.0.0.1:9/", "event_types": []}, "event_types"),
        ({"url": "ftp://127.0.0.1/", "event_types": ["report.created"]}, "url"),
        ({"url": "not a url", "event_types": ["report.created"]}, "url"),
        (
            {"url": "http://127.0.0.1:9/", "event_types": ["report.created"], "active": "yes"},
            "active",
        ),
        (
            {"url": "http://127.0.0.1:9/", "event_types": ["report.created"], "secret": "x"},
            "secret",
        ),
    ],
)
def test_bad_subscriptions_are_400_naming_the_field(admin_client, webhook_settings, body, field):
    answer = admin_client.post("/api/webhooks", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/problem+json"
    assert field in answer.json()["errors"]
    assert not Webhook.objects.exists()


def test_only_admins_manage_webhooks(agent_client, reporter_client):
    for client in (agent_client, reporter_client):
        assert client.get("/api/webhooks").status_code == 403
        assert subscribe(client).status_code == 403


def test_unknown_webhook_is_404(admin_client):
    assert admin_client.get("/api/webhooks/not-an-id").status_code == 404
    assert admin_client.get("/api/webhooks/00000000-0000-0000-0000-000000000000").status_code == 404
    assert (
        admin_client.patch("/api/webhooks/nope", {"active": True}, format="json").status_code == 404
    )


def test_loopback_and_private_urls_are_refused_without_the_setting(admin_client, monkeypatch):
    def no_connect(*args, **kwargs):
        raise AssertionError("the guard let a connection through")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    for url in (
        "http://127.0.0.1:8080/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest",
    ):
        answer = subscribe(admin_client, url)
        assert answer.status_code == 400, (url, answer.content)
        assert "url" in answer.json()["errors"]
    assert not Webhook.objects.exists()


def test_deliveries_log_lists_each_try(
    admin_client, webhook_settings, django_assert_max_num_queries
):
    webhook = Webhook.objects.create(
        url="http://127.0.0.1:9/", event_types=["report.created"], secret="whsec_AAAA"
    )
    for n in range(3):
        delivery = WebhookDelivery.objects.create(
            webhook=webhook, event_type="report.created", body="{}", attempts=2
        )
        for number in (1, 2):
            WebhookAttempt.objects.create(delivery=delivery, number=number, response_status=500 + n)
    # Key, webhook, deliveries, their tries: four, whatever the page size.
    with django_assert_max_num_queries(4 + THROTTLE_QUERIES):
        page = admin_client.get(f"/api/webhooks/{webhook.pk}/deliveries")
    assert page.status_code == 200
    results = page.json()["results"]
    assert len(results) == 3
    assert results[0]["webhook_id"] == f"msg_{results[0]['id'].replace('-', '')}"
    assert [a["number"] for a in results[0]["attempts"]] == [1, 2]
    with django_assert_max_num_queries(3 + THROTTLE_QUERIES):
        assert admin_client.get("/api/webhooks").status_code == 200
