"""At-least-once: a dispatcher killed in the middle of a try loses nothing."""

import os
import signal
import subprocess
import threading

import pytest

from tests.factories import make_report
from tests.hardening.live import BIN, ROOT, current_database_url
from webhooks import services
from webhooks.models import DeliveryStatus, WebhookDelivery

from .conftest import wait_until


def dispatcher_process(log):
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "SECRET_KEY": "test-secret-key",
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_LEASE_SECONDS": "2",
        "WEBHOOK_POLL_SECONDS": "0.2",
        "WEBHOOK_TIMEOUT": "60",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [str(BIN / "python"), "manage.py", "deliver_webhooks"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.django_db(transaction=True)
def test_killing_the_dispatcher_mid_delivery_loses_nothing(receiver, webhook_settings, tmp_path):
    receiver.hold = threading.Event()  # the first try hangs until the dispatcher is dead
    webhook = services.webhook_create(
        url=receiver.url, event_types=["report.created"], actor="tests"
    )
    make_report()  # its report.created delivery is written with it
    with (tmp_path / "dispatcher.log").open("w") as log:
        first = dispatcher_process(log)
        try:
            assert receiver.arrived.wait(60), (tmp_path / "dispatcher.log").read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        receiver.hold.set()
        assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING

        second = dispatcher_process(log)
        try:
            wait_until(
                lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).exists(),
                60,
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    assert len(receiver.requests) == 2
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {WebhookDelivery.objects.get().message_id}
    assert receiver.requests[0].body == receiver.requests[1].body
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert [t.succeeded for t in delivery.tries.all()] == [True]
