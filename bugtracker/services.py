"""State changes of the API plumbing: keys."""

import hashlib
import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from .domain import DomainError, InvalidInput, NotFound
from .models import ApiKey, Role

KEY_PREFIX = "bt_"


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, name: str, role: str) -> tuple[ApiKey, str]:
    """Make a key; the raw key is returned once and never stored."""
    if role not in Role.values:
        raise InvalidInput("role", f"role must be one of {', '.join(Role.values)}.")
    if not name or len(name) > 200:
        raise InvalidInput("name", "name must be 1-200 characters.")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(
                name=name, role=role, prefix=raw[:10], key_hash=hash_api_key(raw)
            )
    except IntegrityError:
        raise DomainError(f"An API key named {name!r} already exists.") from None
    return key, raw


def api_key_revoke(*, name: str) -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(name=name, revoked_at__isnull=True).first()
        if key is None:
            raise NotFound(f"No active API key named {name!r}.")
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        return key


# DSNs: the ingest app issues them (bugtracker imports no domain app, so it registers here).
_dsn_issuers = []


def register_dsn_issuer(issuer) -> None:
    """`issuer(*, api_key, host) -> DSN`, called inside the key's own transaction."""
    if issuer not in _dsn_issuers:
        _dsn_issuers.append(issuer)


def api_key_create_with_dsn(*, name: str, role: str, host: str) -> tuple[ApiKey, str, str]:
    """A key and a Sentry DSN for it, in one transaction: (key, raw key, DSN)."""
    if not _dsn_issuers:
        raise DomainError("No DSN issuer is installed (the ingest app).")
    with transaction.atomic():
        key, raw = api_key_create(name=name, role=role)
        return key, raw, _dsn_issuers[0](api_key=key, host=host)
