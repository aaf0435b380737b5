"""Every state change of webhooks and their deliveries: subscriptions, tries, turning a failing
endpoint off, and the alert events (SLA breaches, backlog) that fire once per crossing."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from bugtracker.domain import InvalidInput, NotFound

from . import outbox, payloads, sending
from .guard import UnsafeUrl, check_url
from .models import (
    BacklogAlertState,
    DeliveryStatus,
    EventType,
    SlaBreachNotice,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)

logger = logging.getLogger("webhooks")

SECRET_BYTES = 24
MAX_RETRY_DELAY = timedelta(hours=6)
ALERT_SCAN_BATCH = 500


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _checked_url(url: str) -> str:
    try:
        check_url(url)
    except UnsafeUrl as exc:
        raise InvalidInput("url", str(exc)) from None
    return url


def webhook_create(
    *, url: str, event_types: list[str], active: bool = True, description: str = "", actor: str
) -> Webhook:
    return Webhook.objects.create(
        url=_checked_url(url),
        event_types=list(dict.fromkeys(event_types)),
        active=active,
        description=description,
        secret=new_secret(),
        created_by=actor,
    )


def webhook_get(*, webhook_id) -> Webhook:
    try:
        return Webhook.objects.get(pk=webhook_id)
    except (Webhook.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No webhook {webhook_id}.") from None


def webhook_update(*, webhook_id, data: dict[str, Any]) -> Webhook:
    """Change url, event_types, active or description. Turning an endpoint back on clears
    its failure streak; turning it off stops its pending deliveries."""
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().filter(pk=webhook_id).first()
        if webhook is None:
            raise NotFound(f"No webhook {webhook_id}.")
        if "url" in data and data["url"] != webhook.url:
            webhook.url = _checked_url(data["url"])
        if "event_types" in data:
            webhook.event_types = list(dict.fromkeys(data["event_types"]))
        if "description" in data:
            webhook.description = data["description"]
        if "active" in data and data["active"] != webhook.active:
            webhook.active = data["active"]
            if webhook.active:
                webhook.failing_since = webhook.disabled_at = None
                webhook.disabled_reason = ""
            else:
                _stop_pending(webhook, "The endpoint was turned off.")
        webhook.updated_at = timezone.now()
        webhook.save()
        return webhook


def webhook_delete(*, webhook_id) -> None:
    deleted, _ = Webhook.objects.filter(pk=webhook_id).delete()
    if not deleted:
        raise NotFound(f"No webhook {webhook_id}.")


def _stop_pending(webhook: Webhook, reason: str) -> int:
    now = timezone.now()
    return WebhookDelivery.objects.filter(webhook=webhook, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, finished_at=now
    )


# Delivering -----------------------------------------------------------------------------


def deliveries_claim_due(*, limit: int, now: datetime | None = None) -> list:
    """Take up to `limit` due deliveries for this process: their due time moves to the end
    of a lease (WEBHOOK_LEASE_SECONDS), so no other process takes them meanwhile and a
    process killed mid-try leaves them due again when the lease ends."""
    if limit < 1:
        return []
    now = now or timezone.now()
    lease_end = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    with transaction.atomic():
        due = WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit])
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(next_attempt_at=lease_end)
    return ids


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed try: WEBHOOK_RETRY_SECONDS * 4^(n-1), at most 6 hours."""
    seconds = settings.WEBHOOK_RETRY_SECONDS * (4 ** max(0, attempts - 1))
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def _body(delivery: WebhookDelivery) -> str:
    """The delivery's body, rendered once (at the first try) and kept for every retry."""
    if delivery.body is not None:
        return delivery.body
    body = payloads.report_event_body(
        event_type=delivery.event_type, event_at=delivery.event_at, report_id=delivery.report_id
    )
    text = json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))
    WebhookDelivery.objects.filter(pk=delivery.pk, body__isnull=True).update(body=text)
    return WebhookDelivery.objects.values_list("body", flat=True).get(pk=delivery.pk)


def delivery_attempt(*, delivery_id) -> bool:
    """One try of a claimed delivery: sign, POST, record the try, then succeed, schedule
    the next try, or give up. True when the endpoint took it."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return False
    webhook = delivery.webhook
    if not webhook.active:
        _finish(delivery, ok=False, answer=None, error="The endpoint is turned off.", final=True)
        return False
    body = _body(delivery)
    started = timezone.now()
    try:
        target = check_url(webhook.url)
    except UnsafeUrl as exc:
        answer = sending.Answer(None, "", f"Refused: {exc}", 0)
    else:
        headers = sending.signed_headers(
            secret=webhook.secret, message_id=delivery.message_id, timestamp=started, body=body
        )
        answer = sending.post(
            target=target, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT
        )
    if not answer.ok and not answer.error:
        answer.error = f"The endpoint answered {answer.status}."
    _finish(delivery, ok=answer.ok, answer=answer, started=started)
    return answer.ok


def _finish(
    delivery: WebhookDelivery,
    *,
    ok: bool,
    answer: sending.Answer | None,
    started: datetime | None = None,
    error: str = "",
    final: bool = False,
) -> None:
    now = timezone.now()
    with transaction.atomic():
        number = delivery.attempts + 1
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started or now,
            duration_ms=answer.duration_ms if answer else 0,
            response_status=answer.status if answer else None,
            response_body=answer.body if answer else "",
            error=(answer.error if answer else "") or error,
            succeeded=ok,
        )
        changes: dict[str, Any] = {"attempts": number}
        if ok:
            changes.update(status=DeliveryStatus.SUCCEEDED, finished_at=now)
        elif final or number >= settings.WEBHOOK_MAX_ATTEMPTS:
            changes.update(status=DeliveryStatus.FAILED, finished_at=now)
        else:
            changes["next_attempt_at"] = now + retry_delay(number)
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            **changes
        )
        if answer is not None:
            _note_endpoint_health(delivery.webhook_id, ok=ok, now=now)


def _note_endpoint_health(webhook_id, *, ok: bool, now: datetime) -> None:
    """A success ends a failure streak; a streak longer than WEBHOOK_DISABLE_AFTER_HOURS
    turns the endpoint off, with a `webhook.disabled` event to the other subscribers."""
    if ok:
        Webhook.objects.filter(pk=webhook_id, failing_since__isnull=False).update(
            failing_since=None
        )
        return
    Webhook.objects.filter(pk=webhook_id, failing_since__isnull=True).update(failing_since=now)
    cutoff = now - timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS)
    webhook = (
        Webhook.objects.select_for_update()
        .filter(pk=webhook_id, active=True, failing_since__lte=cutoff)
        .first()
    )
    if webhook is None:
        return
    hours = settings.WEBHOOK_DISABLE_AFTER_HOURS
    webhook.active = False
    webhook.disabled_at = now
    webhook.disabled_reason = f"Every delivery failed for more than {hours:g} hours."
    webhook.updated_at = now
    webhook.save(update_fields=["active", "disabled_at", "disabled_reason", "updated_at"])
    _stop_pending(webhook, webhook.disabled_reason)
    logger.warning(
        "Webhook %s (%s) turned off: %s", webhook.pk, webhook.url, webhook.disabled_reason
    )
    event(
        event_type=EventType.WEBHOOK_DISABLED,
        data={
            "webhook": {
                "id": str(webhook.pk),
                "url": webhook.url,
                "failing_since": webhook.failing_since.isoformat(),
                "reason": webhook.disabled_reason,
            }
        },
        event_at=now,
    )


def event(*, event_type: str, data: dict, event_at: datetime | None = None) -> None:
    """An event that is not about one report's change (its body is known now)."""
    event_at = event_at or timezone.now()
    body = payloads.envelope(event_type=event_type, event_at=event_at, data=data)
    outbox.enqueue(
        event_type=event_type,
        body=json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":")),
        event_at=event_at,
    )


# Alerts: once per crossing --------------------------------------------------------------


def _scan_lock() -> None:
    """One alert scanner at a time: an advisory lock on PostgreSQL; on SQLite the
    transaction holds the write lock from its start."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('webhooks.alerts_scan'))")


def alerts_scan(*, now: datetime | None = None) -> int:
    """Fire `sla.breached` for open reports newly past their due time and `backlog.alert` for
    each backlog alert that started firing; how many events were written. Crossings are
    remembered, so the next scan does not tell them again; a backlog alert that stops firing
    is forgotten, and fires again when it comes back."""
    from reports.models import OPEN_STATUSES, BugReport  # reports is loaded before its users
    from reports.summary import backlog_alert_kinds

    now = now or timezone.now()
    written = 0
    with transaction.atomic():
        _scan_lock()
        told = SlaBreachNotice.objects.filter(
            report_id=OuterRef("pk"), sla_due_at=OuterRef("sla_due_at")
        )
        fresh = list(
            BugReport.objects.filter(status__in=OPEN_STATUSES, sla_due_at__lt=now)
            .exclude(Exists(told))
            .order_by("sla_due_at", "id")
            .values_list("id", "sla_due_at")[:ALERT_SCAN_BATCH]
        )
        SlaBreachNotice.objects.bulk_create(
            [SlaBreachNotice(report_id=rid, sla_due_at=due, created_at=now) for rid, due in fresh]
        )
        for report_id, due in fresh:
            outbox.enqueue(event_type=EventType.SLA_BREACHED, report_id=report_id, event_at=due)
            written += 1

        firing = backlog_alert_kinds()
        BacklogAlertState.objects.exclude(kind__in=list(firing)).delete()
        known = set(BacklogAlertState.objects.values_list("kind", flat=True))
        for kind, message in firing.items():
            if kind in known:
                continue
            BacklogAlertState.objects.create(kind=kind, since=now)
            event(
                event_type=EventType.BACKLOG_ALERT,
                data={"alert": kind, "message": message},
                event_at=now,
            )
            written += 1
    return written
