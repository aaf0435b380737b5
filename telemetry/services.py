"""Telemetry state changes: recording deployments, filling reports' missing releases."""

import logging
import re
from datetime import datetime

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from bugtracker.domain import InvalidInput
from dedup.groups import group_release_learned
from reports.errors import VersionConflict
from reports.lifecycle import save_changes, write_event
from reports.models import BugReport, EventKind

from .logging import log_failed_write
from .models import Release
from .selectors import live_release_id_subquery

logger = logging.getLogger("bugtracker.telemetry")

ENRICHMENT_ACTOR = "telemetry"
_SHA = re.compile(r"[0-9a-f]{4,64}")


def release_record(
    *,
    sha: str,
    version: str = "",
    environment: str,
    deployed_at: datetime | None = None,
    actor: str,
) -> Release:
    """Record a deployment: one sha in one environment. Recording it again returns the row as
    first recorded (`release.created` False), whatever version or time the repeat names."""
    sha = (sha or "").strip().lower()
    if not _SHA.fullmatch(sha):
        raise InvalidInput("sha", "sha must be 4 to 64 hexadecimal characters (a git commit).")
    environment = (environment or "").strip()
    if not environment:
        raise InvalidInput("environment", "environment must not be blank.")
    version = (version or "").strip()
    deployed_at = deployed_at or timezone.now()
    fields = {"sha": sha, "environment": environment}
    payload = {**fields, "version": version, "deployed_at": deployed_at.isoformat()}
    try:
        with transaction.atomic():
            release = Release.objects.create(**fields, version=version, deployed_at=deployed_at)
    except IntegrityError as exc:
        existing = Release.objects.filter(**fields).first()
        if existing is None:
            log_failed_write(what="release_record", payload=payload, exc=exc)
            raise
        existing.created = False
        return existing
    except DatabaseError as exc:
        log_failed_write(what="release_record", payload=payload, exc=exc)
        raise
    release.created = True
    logger.info(
        "release %s (%s) deployed to %s at %s, recorded by %s",
        sha[:12],
        version or "no version",
        environment,
        deployed_at.isoformat(),
        actor,
        extra={"event": "release_recorded", "release_id": release.pk, "actor": actor},
    )
    return release


def _missing_release():
    """Reports with no release whose environment had a deployment by their created_at.

    Imported legacy reports too: a release their file gave is kept (they are not missing
    one), and those without are exactly the missing data this job is for.
    """
    return (
        BugReport.objects.filter(Q(release_sha__isnull=True) | Q(release_sha=""))
        .exclude(Q(environment__isnull=True) | Q(environment=""))
        .annotate(live_release_id=live_release_id_subquery())
        .filter(live_release_id__isnull=False)
        .only(
            "id",
            "version",
            "environment",
            "created_at",
            "release_sha",
            "telemetry",
            "dedup_group_id",
        )
        .order_by("created_at", "id")
    )


def _fill_release(report: BugReport, release: Release) -> None:
    before = report.release_sha
    # The group first (dedup's lock order: group, then report): it has seen this release now.
    group_release_learned(group_id=report.dedup_group_id, release_sha=release.sha)
    telemetry = dict(report.telemetry or {})
    telemetry["release"] = {
        "sha": release.sha,
        "version": release.version,
        "environment": release.environment,
        "deployed_at": release.deployed_at.isoformat(),
        "source": "registry",
    }
    save_changes(report, {"release_sha": release.sha, "telemetry": telemetry})
    write_event(
        report=report,
        kind=EventKind.ENRICHED,
        actor=ENRICHMENT_ACTOR,
        message=(
            f"release_sha set to {release.sha[:12]} ({release.version or 'no version'}): "
            f"deployed to {release.environment} at {release.deployed_at.isoformat()}."
        ),
        data={
            "field": "release_sha",
            "from": before,
            "to": release.sha,
            "release_id": release.pk,
            "version": release.version,
            "environment": release.environment,
            "deployed_at": release.deployed_at.isoformat(),
        },
    )


def _fill_one(report: BugReport, release: Release) -> bool:
    """Compare-and-set one report; re-read once if it changed meanwhile. True when filled."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                _fill_release(report, release)
            return True
        except VersionConflict:
            if attempt:
                return False
            fresh = _missing_release().filter(pk=report.pk).first()
            if fresh is None or fresh.live_release_id != release.pk:
                return False  # filled meanwhile, or now belongs to another release
            report = fresh
        except DatabaseError as exc:
            log_failed_write(
                what="enrich release_sha",
                report_id=report.pk,
                payload={"release_id": release.pk, "release_sha": release.sha},
                exc=exc,
            )
            return False
    return False


def enrich_missing_releases(*, batch_size: int = 500) -> int:
    """Give reports with no release_sha the release deployed to their environment at their
    created_at, each with an `enriched` event. Idempotent; returns how many were filled.

    Walks the candidates once in (created_at, id) order, `batch_size` at a time, so a
    report that cannot be filled is not revisited within one run.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size", "batch_size must be at least 1.")
    filled = 0
    after: tuple[datetime, object] | None = None
    while True:
        page = _missing_release()
        if after is not None:
            page = page.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
        reports = list(page[:batch_size])
        if not reports:
            break
        releases = Release.objects.in_bulk({r.live_release_id for r in reports})
        with transaction.atomic():
            for report in reports:
                filled += _fill_one(report, releases[report.live_release_id])
        after = (reports[-1].created_at, reports[-1].pk)
        if len(reports) < batch_size:
            break
    if filled:
        logger.info(
            "filled release_sha on %d report(s) from the release registry",
            filled,
            extra={"event": "enriched", "filled": filled},
        )
    return filled
