"""`Idempotency-Key` for POST: the first response is stored per caller for 24 hours and
replayed for a retry with the same body; another body with the same key is a 422.

Stripe's rule: the key's record, the work and the stored response commit in one
transaction, or none of them does. A process killed half-way leaves nothing behind, so a
retry simply does the work; there is no "in progress" state that outlives a request.

Of concurrent requests with one key, the first inserts the record; the others' INSERT
waits on that uncommitted row (bounded by the database's lock timeout), then replays the
committed response, or does the work itself if the first rolled back. Only a wait past
the lock timeout answers 409 `idempotent-request-in-progress`, with `Retry-After`. On
SQLite a write transaction holds the database's write lock from its BEGIN, so requests
with one key run one after another and the later ones replay.
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
from .rows import insert_statement

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


def _insert(record: IdempotencyRecord) -> int | None:
    """INSERT the record unless the key has one: its id, or None when another committed
    first. Waits on a concurrent request's uncommitted record until it commits or rolls
    back. One statement, so the common case costs one round trip."""
    sql, params = insert_statement(record)
    sql += " ON CONFLICT (caller, key) DO NOTHING RETURNING id"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _claim_key(caller: str, key: str, request, body_hash: str) -> IdempotencyRecord | None:
    """Insert our record (in the caller's transaction); None when we own the key, else the
    committed record to replay."""
    now = timezone.now()
    record = IdempotencyRecord(
        caller=caller,
        key=key,
        method=request.method,
        path=request.path[:500],
        body_hash=body_hash,
        created_at=now,
    )
    for _ in range(2):
        try:
            record.pk = _insert(record)
        except OperationalError as exc:
            if _is_lock_timeout(exc):
                raise IdempotentRequestInFlight(
                    "The first request with this Idempotency-Key is still in progress; "
                    "retry shortly."
                ) from exc
            raise
        if record.pk is not None:
            return None
        existing = IdempotencyRecord.objects.filter(caller=caller, key=key).first()
        if existing is None:  # purged between the two statements
            continue
        # Past its 24 hours (not purged yet), or left without a response by a version
        # that committed the record before the work: the key is free again.
        if existing.created_at < now - TTL or existing.status_code is None:
            IdempotencyRecord.objects.filter(pk=existing.pk).delete()
            continue
        return existing
    raise IdempotentRequestInFlight("The Idempotency-Key is being recycled; retry shortly.")


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
        # The work joins this transaction (its own atomic blocks nest in it): an exception
        # anywhere rolls back the key with it, so a failed request does not burn the key.
        with transaction.atomic():
            existing = _claim_key(caller, key, request, body_hash)
            if existing is not None:
                if existing.body_hash != body_hash:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used with a different request body."
                    )
                return _replay(existing)
            response = view_method(self, request, *args, **kwargs)
            if response.status_code >= 500:
                transaction.set_rollback(True)
                return response
            _store(caller, key, response)
        return response

    return wrapper


def _store(caller: str, key: str, response) -> None:
    rendered = json.dumps(response.data, default=str).encode()
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    if getattr(response, "content_type", None):
        headers["Content-Type"] = response.content_type
    IdempotencyRecord.objects.filter(caller=caller, key=key).update(
        status_code=response.status_code, response_body=rendered, response_headers=headers
    )


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
