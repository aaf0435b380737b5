"""Every state change of webhooks and their deliveries: subscriptions, tries, turning a failing
endpoint off, and the alert events (SLA breaches, backlog) that fire once per crossing."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from dataclasses import dataclass
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


_DELIVERIES = WebhookDelivery._meta.db_table
_ATTEMPTS = WebhookAttempt._meta.db_table


def _prep(model, field: str, value):
    return model._meta.get_field(field).get_db_prep_save(value, connection)


def deliveries_claim_due(*, limit: int, now: datetime | None = None) -> list:
    """Take up to `limit` due deliveries for this process: their due time moves to the end
    of a lease (WEBHOOK_LEASE_SECONDS), so no other process takes them meanwhile and a
    process killed mid-try leaves them due again when the lease ends. One statement
    (SKIP LOCKED on PostgreSQL; SQLite's write lock serialises takers)."""
    if limit < 1:
        return []
    now = now or timezone.now()
    lease_end = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    sql = (
        f"UPDATE {_DELIVERIES} SET next_attempt_at = %s WHERE id IN ("
        f"SELECT id FROM {_DELIVERIES} WHERE status = 'pending' AND next_attempt_at <= %s "
        f"ORDER BY next_attempt_at, id LIMIT %s{lock}) RETURNING id"
    )
    params = [
        _prep(WebhookDelivery, "next_attempt_at", lease_end),
        _prep(WebhookDelivery, "next_attempt_at", now),
        limit,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    field = WebhookDelivery._meta.pk
    return [field.to_python(row[0]) for row in rows]


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed try: WEBHOOK_RETRY_SECONDS * 4^(n-1), at most 6 hours."""
    seconds = settings.WEBHOOK_RETRY_SECONDS * (4 ** max(0, attempts - 1))
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def _bodies(deliveries: list[WebhookDelivery]) -> dict:
    """Every delivery's body by id. A report event's is rendered at its first try and kept
    (the first writer wins), so every retry sends the same bytes."""
    bodies = {d.pk: d.body for d in deliveries if d.body is not None}
    missing = [d for d in deliveries if d.body is None]
    if not missing:
        return bodies
    reports = payloads.compact_reports({d.report_id for d in missing if d.report_id})
    rendered = {
        d.pk: json.dumps(
            payloads.report_event_body(
                event_type=d.event_type,
                event_at=d.event_at,
                report_id=d.report_id,
                report=reports.get(d.report_id),
            ),
            cls=DjangoJSONEncoder,
            separators=(",", ":"),
        )
        for d in missing
    }
    keep = f"UPDATE {_DELIVERIES} SET body = COALESCE(body, %s) WHERE id = %s RETURNING body"
    with connection.cursor() as cursor:
        for delivery_id, text in rendered.items():
            cursor.execute(keep, [text, _prep(WebhookDelivery, "id", delivery_id)])
            bodies[delivery_id] = cursor.fetchone()[0]
    return bodies


def delivery_attempt(*, delivery_id) -> bool:
    """One try of one claimed delivery; True when the endpoint took it."""
    return deliveries_attempt(delivery_ids=[delivery_id]) == 1


def deliveries_attempt(*, delivery_ids: list) -> int:
    """One try of each claimed delivery: sign, POST, then record every try and its outcome
    (succeeded, next try scheduled, or given up) together. How many the endpoints took.

    Tries stop before the lease would end (WEBHOOK_LEASE_SECONDS less one WEBHOOK_TIMEOUT):
    deliveries not tried by then come back when their lease ends."""
    deliveries = list(
        WebhookDelivery.objects.select_related("webhook")
        .filter(pk__in=list(delivery_ids), status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at", "id")
    )
    if not deliveries:
        return 0
    bodies = _bodies(deliveries)
    began = time.monotonic()
    tried: list[Try] = []
    pool = sending.Connections()
    try:
        _try_each(deliveries, bodies, tried, pool, began)
    finally:
        pool.close()
    _record(tried)
    return sum(1 for t in tried if t.ok)


def _try_each(deliveries, bodies, tried, pool, began) -> None:
    budget = settings.WEBHOOK_LEASE_SECONDS - settings.WEBHOOK_TIMEOUT
    for delivery in deliveries:
        if tried and time.monotonic() - began > budget:
            break
        webhook = delivery.webhook
        if not webhook.active:
            tried.append(Try(delivery, None, timezone.now(), "The endpoint is turned off."))
            continue
        started = timezone.now()
        try:
            target = check_url(webhook.url)
        except UnsafeUrl as exc:
            answer = sending.Answer(None, "", f"Refused: {exc}", 0)
        else:
            body = bodies[delivery.pk]
            headers = sending.signed_headers(
                secret=webhook.secret, message_id=delivery.message_id, timestamp=started, body=body
            )
            answer = sending.post(
                target=target,
                body=body,
                headers=headers,
                timeout=settings.WEBHOOK_TIMEOUT,
                pool=pool,
            )
        if not answer.ok and not answer.error:
            answer.error = f"The endpoint answered {answer.status}."
        tried.append(Try(delivery, answer, started))


@dataclass
class Try:
    delivery: WebhookDelivery
    answer: sending.Answer | None  # None: not sent (the endpoint is turned off)
    started: datetime
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.answer.ok


def _record(tried: list[Try]) -> None:
    """Every try's attempt row and its delivery's new state, in one transaction (one
    statement on PostgreSQL); then each endpoint's health."""
    if not tried:
        return
    now = timezone.now()
    attempts, updates = [], []
    for t in tried:
        d, answer = t.delivery, t.answer
        number = d.attempts + 1
        if t.ok:
            status, finished, due = DeliveryStatus.SUCCEEDED, now, d.next_attempt_at
        elif answer is None or number >= settings.WEBHOOK_MAX_ATTEMPTS:
            status, finished, due = DeliveryStatus.FAILED, now, d.next_attempt_at
        else:
            status, finished, due = DeliveryStatus.PENDING, None, now + retry_delay(number)
        attempts.append(
            [
                _prep(WebhookAttempt, "delivery", d.pk),
                number,
                _prep(WebhookAttempt, "started_at", t.started),
                answer.duration_ms if answer else 0,
                answer.status if answer else None,
                answer.body if answer else "",
                (answer.error if answer else "") or t.error,
                t.ok,
            ]
        )
        updates.append(
            [
                _prep(WebhookDelivery, "id", d.pk),
                number,
                status,
                _prep(WebhookDelivery, "finished_at", finished),
                _prep(WebhookDelivery, "next_attempt_at", due),
            ]
        )
    postgres = connection.vendor == "postgresql"
    row = "(%s::uuid, %s::int, %s::text, %s::timestamptz, %s::timestamptz)" if postgres else None
    insert_sql = (
        f"INSERT INTO {_ATTEMPTS} (delivery_id, number, started_at, duration_ms, "
        "response_status, response_body, error, succeeded) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(attempts))
    )
    insert_params = [p for a in attempts for p in a]
    with transaction.atomic(), connection.cursor() as cursor:
        if postgres:
            cursor.execute(
                f"WITH tried AS ({insert_sql}), "
                f"outcome (id, attempts, status, finished_at, next_attempt_at) AS "
                f"(VALUES {', '.join([row] * len(updates))}) "
                f"UPDATE {_DELIVERIES} AS d SET attempts = o.attempts, status = o.status, "
                "finished_at = o.finished_at, next_attempt_at = o.next_attempt_at "
                "FROM outcome AS o WHERE d.id = o.id AND d.status = 'pending'",
                insert_params + [p for u in updates for p in u],
            )
        else:
            cursor.execute(insert_sql, insert_params)
            for delivery_id, *values in updates:
                cursor.execute(
                    f"UPDATE {_DELIVERIES} SET attempts = %s, status = %s, finished_at = %s, "
                    "next_attempt_at = %s WHERE id = %s AND status = 'pending'",
                    [*values, delivery_id],
                )
    # Endpoint health: a failure counts; a success matters only to a failing endpoint.
    health: dict = {}
    for t in tried:
        if t.answer is not None:
            health[t.delivery.webhook_id] = (t.ok, t.delivery.webhook.failing_since)
    for webhook_id, (ok, failing_since) in health.items():
        if not ok or failing_since is not None:
            with transaction.atomic():
                _note_endpoint_health(webhook_id, ok=ok, now=now)


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
    told = SlaBreachNotice.objects.filter(
        report_id=OuterRef("pk"), sla_due_at=OuterRef("sla_due_at")
    )
    untold = (
        BugReport.objects.filter(status__in=OPEN_STATUSES, sla_due_at__lt=now)
        .exclude(Exists(told))
        .order_by("sla_due_at", "id")
    )
    firing = backlog_alert_kinds()
    known = set(BacklogAlertState.objects.values_list("kind", flat=True))
    if not untold.exists() and known == set(firing):
        return 0  # nothing crossed: no write transaction (SQLite's lock is everyone's)
    written = 0
    with transaction.atomic():
        _scan_lock()
        fresh = list(untold.values_list("id", "sla_due_at")[:ALERT_SCAN_BATCH])
        SlaBreachNotice.objects.bulk_create(
            [SlaBreachNotice(report_id=rid, sla_due_at=due, created_at=now) for rid, due in fresh]
        )
        for report_id, due in fresh:
            outbox.enqueue(event_type=EventType.SLA_BREACHED, report_id=report_id, event_at=due)
            written += 1

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
