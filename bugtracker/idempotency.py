"""`Idempotency-Key` for POST: the first response is stored per caller for 24 hours and
replayed for a retry with the same body; another body with the same key is a 422.

Stripe's rule: the key's record, the work and the stored response commit in one
transaction, or none of them does. A process killed half-way leaves nothing behind, so a
retry simply does the work; there is no "in progress" state that outlives a request.

The record is written last, with the response, in the work's transaction: a fresh key
costs one statement. Of concurrent requests with one key, the first to commit wins; a
later one's INSERT waits on the winner's uncommitted record (bounded by the database's
lock timeout), then rolls its own work back and replays the committed response, or
commits its own if the other rolled back. Only a wait past the lock timeout answers 409
`idempotent-request-in-progress`, with `Retry-After`. On SQLite a write transaction holds
the write lock from its BEGIN, so requests with one key run one after another.
"""

import functools
import hashlib
import json
from datetime import timedelta

from django.db import OperationalError, connection, transaction
from django.utils import timezone
from rest_framework.response import Response

from .clients import client_address
from .domain import DomainError
from .models import IdempotencyRecord
from .permissions import caller_id

TTL = timedelta(hours=24)
REPLAYED_HEADERS = ("Location", "ETag")
# SQLSTATE lock_not_available: the lock timeout ran out while another request held the key.
LOCK_NOT_AVAILABLE = "55P03"
IN_FLIGHT_RETRY_AFTER_SECONDS = 1


class IdempotencyKeyReused(DomainError):
    status_code = 422
    title = "Idempotency key reused"
    type_slug = "idempotency-key-reused"


class IdempotentRequestInFlight(DomainError):
    status_code = 409
    title = "Request in progress"
    type_slug = "idempotent-request-in-progress"
    headers = {"Retry-After": str(IN_FLIGHT_RETRY_AFTER_SECONDS)}


class InvalidIdempotencyKey(DomainError):
    status_code = 400
    title = "Invalid Idempotency-Key"
    type_slug = "validation-error"


def _caller(request) -> str:
    caller = caller_id(request)
    if caller == "anonymous":
        caller = f"anonymous:{client_address(request)}"
    return caller


def _body_hash(request) -> str:
    canonical = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.path}\n{canonical}".encode()).hexdigest()


def _is_lock_timeout(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


_HEADERS_FIELD = IdempotencyRecord._meta.get_field("response_headers")
_RECORD_FIELDS = (
    "caller",
    "key",
    "method",
    "path",
    "body_hash",
    "status_code",
    "response_body",
    "response_headers",
    "created_at",
)


@functools.cache
def _insert_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(IdempotencyRecord._meta.get_field(name).column) for name in _RECORD_FIELDS
    )
    values = ", ".join(["%s"] * len(_RECORD_FIELDS))
    return (
        f"INSERT INTO {quote(IdempotencyRecord._meta.db_table)} ({columns}) VALUES ({values}) "
        "ON CONFLICT (caller, key) DO NOTHING RETURNING id"
    )


class _KeyTaken(Exception):
    """Another request with the key committed first: roll back our work, replay theirs."""


def _record(caller: str, key: str, request, body_hash: str, response) -> None:
    """INSERT the key's record with the response, in the work's transaction; _KeyTaken when
    the key has a record. Waits on a concurrent request's uncommitted record until it
    commits or rolls back. One statement, hand-written (the ORM's costs more to compile
    than to run, on every keyed submission)."""
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    if getattr(response, "content_type", None):
        headers["Content-Type"] = response.content_type
    params = [
        caller,
        key,
        request.method,
        request.path[:500],
        body_hash,
        response.status_code,
        json.dumps(response.data, default=str).encode(),
        _HEADERS_FIELD.get_db_prep_save(headers, connection),
        connection.ops.adapt_datetimefield_value(timezone.now()),
    ]
    try:
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(connection.vendor), params)
            inserted = cursor.fetchone()
    except OperationalError as exc:
        if _is_lock_timeout(exc):
            raise IdempotentRequestInFlight(
                "The first request with this Idempotency-Key is still in progress; retry shortly."
            ) from exc
        raise
    if inserted is None:
        raise _KeyTaken


def _committed(caller: str, key: str) -> IdempotencyRecord | None:
    """The key's record to replay; None when there is none to honour (purged, past its 24
    hours, or left without a response by a version that committed the key before the
    work), and then the key is free again."""
    existing = IdempotencyRecord.objects.filter(caller=caller, key=key).first()
    if existing is None:
        return None
    if existing.created_at < timezone.now() - TTL or existing.status_code is None:
        IdempotencyRecord.objects.filter(pk=existing.pk).delete()
        return None
    return existing


def idempotent(view_method):
    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise InvalidIdempotencyKey(
                "Idempotency-Key must be 1-255 printable characters.",
                errors={"Idempotency-Key": ["Must be 1-255 printable characters."]},
            )
        caller, body_hash = _caller(request), _body_hash(request)
        for _ in range(2):
            try:
                return _work_once(view_method, self, request, args, kwargs, caller, key, body_hash)
            except _KeyTaken:
                existing = _committed(caller, key)
            if existing is None:
                continue
            if existing.body_hash != body_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body."
                )
            return _replay(existing)
        raise IdempotentRequestInFlight("The Idempotency-Key is being recycled; retry shortly.")

    return wrapper


def _work_once(view_method, view, request, args, kwargs, caller, key, body_hash):
    # The work joins this transaction (its own atomic blocks nest in it) and the key's
    # record comes last, with the response: they commit together or not at all. An
    # exception anywhere rolls the key back with the work: a failed request does not burn
    # it. A fresh key (the common case) costs one statement; a retry of a finished one
    # does the work again, then rolls it back and replays the stored answer.
    with transaction.atomic():
        response = view_method(view, request, *args, **kwargs)
        if response.status_code >= 500:
            transaction.set_rollback(True)
            return response
        _record(caller, key, request, body_hash, response)
    return response


def _replay(record: IdempotencyRecord) -> Response:
    data = json.loads(bytes(record.response_body)) if record.response_body else None
    headers = dict(record.response_headers)
    content_type = headers.pop("Content-Type", None)
    response = Response(data, status=record.status_code, headers=headers, content_type=content_type)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_purge() -> int:
    """Drop records past their 24 hours; the worker calls this periodically."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - TTL).delete()
    return deleted
