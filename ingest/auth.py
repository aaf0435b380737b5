"""`sentry_key` authentication: the DSN's public key, from `X-Sentry-Auth` or the query string."""

import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from bugtracker.models import ApiKey

from .models import DsnKey

PUBLIC_KEY = re.compile(r"[0-9a-f]{32}")
_AUTH_PAIR = re.compile(r"(\w+)\s*=\s*([^,\s]*)")


@dataclass(frozen=True, slots=True)
class DsnCaller:
    dsn_key_id: int
    name: str  # the API key's name: reporter_id and actor
    role: str


class IngestAuthError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def hash_public_key(public_key: str) -> str:
    return hashlib.sha256(public_key.encode()).hexdigest()


def sentry_key_of(request) -> str | None:
    """`sentry_key` from `X-Sentry-Auth: Sentry sentry_key=…, …` (or `Authorization: Sentry
    …`, which some SDKs send), else from the query string."""
    for header in ("X-Sentry-Auth", "Authorization"):
        value = request.headers.get(header) or ""
        if value[:7].lower() == "sentry ":
            for name, found in _AUTH_PAIR.findall(value[7:]):
                if name == "sentry_key":
                    return found
    return request.GET.get("sentry_key")


_SQL = (
    f"SELECT d.id, k.name, k.role, d.public_key_hash FROM {DsnKey._meta.db_table} d "
    f"JOIN {ApiKey._meta.db_table} k ON k.id = d.api_key_id "
    "WHERE d.public_key_hash = %s AND k.revoked_at IS NULL"
)


# Live DSNs seen lately, per process: digest → (caller, monotonic expiry). An SDK sends
# every event with the same key; INGEST_KEY_CACHE_SECONDS bounds how long a revoked key's
# DSN keeps working in a process that saw it (0: look it up every time).
_known: dict[str, tuple[DsnCaller, float]] = {}
_known_lock = threading.Lock()
KNOWN_MAX = 1024


def forget_known_dsns() -> None:
    with _known_lock:
        _known.clear()


def _lookup(digest: str) -> DsnCaller | None:
    ttl = settings.INGEST_KEY_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        hit = _known.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
    with connection.cursor() as cursor:
        cursor.execute(_SQL, [digest])
        row = cursor.fetchone()
    if row is None or not hmac.compare_digest(row[3], digest):
        return None
    caller = DsnCaller(row[0], row[1], row[2])
    if ttl > 0:
        with _known_lock:
            if len(_known) >= KNOWN_MAX:
                _known.clear()
            _known[digest] = (caller, now + ttl)
    return caller


def authenticate(request, project_id: int) -> DsnCaller:
    """The caller of a DSN (every role may submit); 401 without a valid live key, 403 for
    another project's id."""
    public_key = sentry_key_of(request)
    if not public_key:
        raise IngestAuthError(401, "Send sentry_key in X-Sentry-Auth or the query string.")
    if not PUBLIC_KEY.fullmatch(public_key):
        raise IngestAuthError(401, "Invalid sentry_key: 32 lowercase hex characters expected.")
    caller = _lookup(hash_public_key(public_key))
    if caller is None:
        raise IngestAuthError(401, "Unknown or revoked sentry_key.")
    if caller.dsn_key_id != project_id:
        raise IngestAuthError(
            403, f"This sentry_key belongs to project {caller.dsn_key_id}, not {project_id}."
        )
    return caller
