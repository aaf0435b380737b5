"""The outbox: delivery rows written in the transaction of the change they tell of.

One INSERT … SELECT per event: a row for every active webhook subscribed to its type, with no
round trip to read the subscriptions first, and nothing at all when nobody subscribes. The
statement is also handed out as SQL (`insert_sql`) for writers that send their change as one
statement (reports' fast paths), so it commits, or not, with the change itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from .models import Webhook, WebhookDelivery

_DELIVERIES = WebhookDelivery._meta.db_table
_WEBHOOKS = Webhook._meta.db_table
_COLUMNS = (
    "id, webhook_id, event_type, report_id, body, event_at, status, attempts, "
    "next_attempt_at, created_at"
)


def _new_id_sql() -> str:
    if connection.vendor == "postgresql":
        return "gen_random_uuid()"
    return "lower(hex(randomblob(16)))"  # how Django keeps a UUID in SQLite: 32 hex digits


def _subscribed_sql() -> str:
    if connection.vendor == "postgresql":
        return "w.event_types @> jsonb_build_array(%s::text)"
    return "EXISTS (SELECT 1 FROM json_each(w.event_types) AS t WHERE t.value = %s)"


def insert_sql(
    *, event_type: str, report_id_sql: str = "%s", event_at_sql: str = "%s", source: str = ""
) -> str:
    """The INSERT … SELECT for one event, its report id and time given as SQL (a parameter by
    default, or a column of `source`, e.g. `claimed` in a WITH statement). Parameters, in
    order: the event type, the report id (where it is `%s`), the body, the event time
    (where it is `%s`), the due time and creation time, and the event type again (the
    subscription test): what insert_params() lists."""
    from_sql = f"{_WEBHOOKS} AS w" + (f", {source}" if source else "")
    cast = "::uuid" if connection.vendor == "postgresql" and report_id_sql == "%s" else ""
    return (
        f"INSERT INTO {_DELIVERIES} ({_COLUMNS}) "
        f"SELECT {_new_id_sql()}, w.id, %s, {report_id_sql}{cast}, %s, {event_at_sql}, "
        f"'pending', 0, %s, %s FROM {from_sql} WHERE w.active AND {_subscribed_sql()}"
    )


def _prep(field: str, value):
    return WebhookDelivery._meta.get_field(field).get_db_prep_save(value, connection)


def insert_params(
    *,
    event_type: str,
    report_id=None,
    event_at: datetime | None = None,
    body: str | None = None,
    with_report_id: bool = True,
    with_event_at: bool = True,
) -> list:
    now = timezone.now()
    params: list = [event_type]
    if with_report_id:
        params.append(_prep("report_id", report_id))
    params.append(body)
    if with_event_at:
        params.append(_prep("event_at", event_at or now))
    params += [_prep("next_attempt_at", now), _prep("created_at", now), event_type]
    return params


def enqueue(*, event_type: str, report_id=None, body: str | None = None, event_at=None) -> None:
    """Write `event_type`'s deliveries now, in the caller's transaction (if any)."""
    params = insert_params(event_type=event_type, report_id=report_id, event_at=event_at, body=body)
    with connection.cursor() as cursor:
        cursor.execute(insert_sql(event_type=event_type), params)
        written = cursor.rowcount
    if written:
        wake_on_commit()


# This process's dispatcher, when it runs one, hands its wake-up here as it starts
# (dispatcher.start_process_dispatcher): the dispatcher imports the services that use this
# module, so this module does not import it. (process id, wake-up)
_waker: tuple[int, Callable[[], None]] | None = None


def set_waker(wake: Callable[[], None]) -> None:
    global _waker
    _waker = (os.getpid(), wake)


def wake_on_commit() -> None:
    """Tell this process's dispatcher, if it runs one, once the change commits, that
    something is due (others find it when they next look)."""
    if _waker is not None and _waker[0] == os.getpid():
        transaction.on_commit(_waker[1])
