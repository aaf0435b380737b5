"""Ingest's state changes: DSN keys, and events filed as reports through the submission service."""

import secrets
import uuid

from django.db import IntegrityError, transaction

from bugtracker.models import ApiKey
from reports.models import BugReport
from reports.services import report_create
from telemetry.models import Release

from .auth import DsnCaller, hash_public_key
from .mapping import MappedEvent
from .models import DsnKey


def dsn_text(*, public_key: str, host: str, project_id: int) -> str:
    """`http://<public key>@<host>/<project id>`; `host` may carry its own scheme."""
    scheme, _, rest = host.rpartition("://")
    return f"{scheme or 'http'}://{public_key}@{rest.strip('/')}/{project_id}"


def dsn_key_create(*, api_key: ApiKey, host: str) -> str:
    """A DSN for `api_key`: the public key is returned once (in the DSN), its hash stored."""
    public_key = secrets.token_hex(16)
    with transaction.atomic():
        dsn_key = DsnKey.objects.create(
            api_key=api_key, public_key_hash=hash_public_key(public_key)
        )
    return dsn_text(public_key=public_key, host=host, project_id=dsn_key.pk)


def release_sha_for_version(*, version: str, environment: str | None) -> str | None:
    """The commit the registry recorded for a release version, that environment's first."""
    rows = list(
        Release.objects.filter(version=version)
        .order_by("-deployed_at")
        .values_list("sha", "environment")[:50]
    )
    for sha, env in rows:
        if env == environment:
            return sha
    return rows[0][0] if rows else None


# Report ids of ingested events: uuid5(this, "<DSN id>:<event id>").
EVENT_REPORT_NAMESPACE = uuid.UUID("5e7a1c2e-9b1f-4f57-a3a4-0d3c5b1e8f21")


def event_report_id(*, dsn_key_id: int, event_id: uuid.UUID) -> uuid.UUID:
    """The id of the report an event makes: the same event from the same DSN, the same id.

    So the event id is the idempotency key with no table of its own: a second delivery hits
    the report's primary key inside the submission's own transaction. Native submissions
    cannot choose ids, and another DSN's event with the same id gets another report id.
    """
    return uuid.uuid5(EVENT_REPORT_NAMESPACE, f"{dsn_key_id}:{event_id.hex}")


def event_file(
    *, caller: DsnCaller, event_id: uuid.UUID, data: dict, client_fingerprint=None
) -> BugReport | None:
    """File one event as a report (grouped and evented by the submission service, in its
    one transaction), or None when this DSN already sent this event id."""
    report_id = event_report_id(dsn_key_id=caller.dsn_key_id, event_id=event_id)
    try:
        # Ours, so a repeat's IntegrityError rolls back only this: outermost in a request (no
        # savepoint; report_create makes none inside it), a savepoint inside a caller's.
        with transaction.atomic():
            return report_create(
                actor=caller.name,
                data={**data, "id": report_id},
                client_fingerprint=client_fingerprint,
            )
    except IntegrityError:
        if BugReport.objects.filter(pk=report_id).exists():
            return None
        raise


def mapped_report_data(*, caller: DsnCaller, mapped: MappedEvent, request_id: str | None) -> dict:
    """The submission an event makes: the mapping, plus who sent it, its request and, for a
    release that is a version, the commit the registry knows it by."""
    data = {**mapped.data, "reporter_id": caller.name}
    if request_id:
        data["request_id"] = request_id
    if mapped.release_version and "release_sha" not in data:
        sha = release_sha_for_version(
            version=mapped.release_version, environment=data.get("environment")
        )
        if sha:
            data["release_sha"] = sha
    return data
