"""`Idempotency-Key` for POST: the first response is stored per caller for 24 hours and
replayed for a retry with the same body; another body with the same key is a 422.

The record is inserted before the work starts, so of several concurrent requests with
one key exactly one does the work; the others see it in flight (409) or replay it.
"""

import functools
import hashlib
import json
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from .clients import client_address
from .domain import DomainError
from .models import IdempotencyRecord
from .permissions import caller_id

TTL = timedelta(hours=24)
# A record still without a response after this long belongs to a request that died.
ABANDONED_AFTER = timedelta(minutes=2)
REPLAYED_HEADERS = ("Location", "ETag")


class IdempotencyKeyReused(DomainError):
    status_code = 422
    title = "Idempotency key reused"
    type_slug = "idempotency-key-reused"


class IdempotentRequestInFlight(DomainError):
    status_code = 409
    title = "Request in progress"
    type_slug = "idempotent-request-in-progress"


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


def _claim_key(caller: str, key: str, request, body_hash: str) -> IdempotencyRecord | None:
    """Insert our record; return None when we own the key, else the existing record."""
    now = timezone.now()
    for _ in range(2):
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(
                    caller=caller,
                    key=key,
                    method=request.method,
                    path=request.path[:500],
                    body_hash=body_hash,
                    created_at=now,
                )
            return None
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(caller=caller, key=key).first()
            if existing is None:
                continue
            stale = existing.created_at < now - TTL
            abandoned = existing.status_code is None and existing.created_at < now - ABANDONED_AFTER
            if stale or abandoned:
                IdempotencyRecord.objects.filter(
                    pk=existing.pk, created_at=existing.created_at
                ).delete()
                continue
            return existing
    raise IdempotentRequestInFlight("Another request with this Idempotency-Key is in progress.")


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
        existing = _claim_key(caller, key, request, body_hash)
        if existing is not None:
            if existing.body_hash != body_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body."
                )
            if existing.status_code is None:
                raise IdempotentRequestInFlight(
                    "The first request with this Idempotency-Key is still in progress; retry shortly."
                )
            return _replay(existing)
        try:
            response = view_method(self, request, *args, **kwargs)
        except Exception:
            IdempotencyRecord.objects.filter(caller=caller, key=key).delete()
            raise
        _store(caller, key, response)
        return response

    return wrapper


def _store(caller: str, key: str, response) -> None:
    if response.status_code >= 500:
        IdempotencyRecord.objects.filter(caller=caller, key=key).delete()
        return
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
