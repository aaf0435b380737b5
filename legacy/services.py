"""Importing mapped legacy reports: one transaction per batch, bulk inserts, then grouping."""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.fields.json import KT

from bugtracker.bulk import in_list, insert_rows
from dedup.bulk import legacy_reports_group_bulk
from dedup.grouping import report_group
from reports.lifecycle import db_now, sla_due_for
from reports.models import BugReport, BugReportEvent, EventKind, Status

from .mapping import LEGACY_HOLDER, LegacyReport

logger = logging.getLogger(__name__)

IMPORT_ACTOR = "backfill"
GROUP_CHUNK = 500


class Outcome(StrEnum):
    INSERTED = "inserted"
    PRESENT = "already_present"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class BatchItem:
    """A mapped report and where it was read from (`where` is shown to humans)."""

    report: LegacyReport
    where: str


def legacy_reports_import(
    *,
    items: list[BatchItem],
    actor: str = IMPORT_ACTOR,
    dry_run: bool = False,
    seen: dict[str, str] | None = None,
) -> list[Outcome]:
    """Insert the batch's new reports with their events in one transaction.

    Returns one outcome per item, in order. A legacy id already in the database (or earlier
    in the batch) with the same digest is already present; with another digest it is a
    conflict and the first one read wins. A file our mirror wrote is already present as long
    as its report exists. `dry_run` writes nothing; `seen` then stands in for the rows the
    earlier batches would have inserted.
    """
    if dry_run:
        return _classify(items, seen if seen is not None else {}, insert=None)
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _classify(items, {}, insert=actor)
        except IntegrityError:
            # Another importer (a --watch next to a manual run) inserted one of these ids
            # between our lookup and our insert: classify the batch again.
            if attempt == 2:
                raise
            logger.warning("legacy import: concurrent insert detected, retrying the batch")
    raise AssertionError("unreachable")


def _classify(items: list[BatchItem], seen: dict[str, str], *, insert: str | None) -> list[Outcome]:
    ids = [item.report.legacy_id for item in items]
    known: dict[str, str | None] = dict(
        BugReport.objects.filter(legacy_id__in=in_list(ids)).values_list(
            "legacy_id", KT("metadata__legacy__digest")
        )
    )
    mirror_pks = [item.report.mirror_of for item in items if item.report.mirror_of]
    known_pks: set[uuid.UUID] = (
        set(
            BugReport.objects.filter(pk__in=in_list(mirror_pks, uuids=True)).values_list(
                "pk", flat=True
            )
        )
        if mirror_pks
        else set()
    )
    outcomes: list[Outcome] = []
    new: list[BatchItem] = []
    for item in items:
        report = item.report
        digest = known.get(report.legacy_id, seen.get(report.legacy_id))
        exists = report.legacy_id in known or report.legacy_id in seen
        if report.mirror_of is not None and (exists or report.mirror_of in known_pks):
            # Our own mirror of a report we hold: never an insert, never a conflict (no echo).
            outcomes.append(Outcome.PRESENT)
        elif exists:
            outcomes.append(Outcome.PRESENT if digest == report.digest else Outcome.CONFLICT)
        else:
            seen[report.legacy_id] = report.digest
            outcomes.append(Outcome.INSERTED)
            new.append(item)
    if insert is not None and new:
        _insert(new, actor=insert)
    return outcomes


def _report_attnames() -> tuple[str, ...]:
    return tuple(f.attname for f in BugReport._meta.concrete_fields if not f.generated)


EVENT_ATTNAMES = ("report_id", "kind", "actor", "message", "data", "created_at")


def legacy_claim(*, status: str, now) -> dict[str, Any]:
    """A report imported `in_progress` comes in claimed by `legacy` for LEGACY_CLAIM_HOURS
    from its import: old agents may still be working on it during the cut-over, so
    `claim-next` and the worker leave it alone until the lease runs out (or an admin releases
    it). No token exists for this claim; 0 hours turns it off."""
    hours = settings.LEGACY_CLAIM_HOURS
    if status != Status.IN_PROGRESS or hours <= 0:
        return {}
    return {"claim_holder": LEGACY_HOLDER, "claim_expires_at": now + timedelta(hours=hours)}


def _insert(items: list[BatchItem], *, actor: str) -> None:
    """The batch's reports and their events, as two bulk statements (see bulk.py)."""
    now = db_now()
    attnames = _report_attnames()
    # Columns the mapping does not fill keep their model default (computed once per batch).
    template = {
        f.attname: f.get_default() for f in BugReport._meta.concrete_fields if not f.generated
    }
    row_of = itemgetter(*attnames)
    rows = []
    events = []
    for item in items:
        legacy = item.report
        fields = legacy.fields
        claim = legacy_claim(status=fields["status"], now=now)
        values = {
            **template,
            **fields,
            **claim,
            "id": legacy.pk,
            "metadata": legacy.metadata,
            "version": 1,
            "sla_due_at": sla_due_for(severity=fields["severity"], created_at=fields["created_at"]),
        }
        rows.append(row_of(values))
        message = f"Imported from legacy report {legacy.legacy_id}."
        data: dict[str, Any] = {"legacy_id": legacy.legacy_id, "from": item.where}
        if claim:
            hours = settings.LEGACY_CLAIM_HOURS
            message += (
                f" In progress there: claimed by {LEGACY_HOLDER} for {hours:g} h "
                "(LEGACY_CLAIM_HOURS) while old agents may still work on it."
            )
            data["claim_hours"] = hours
        if legacy.legacy_attempts:
            message += (
                f" Its {legacy.legacy_attempts} attempt(s) in the old system do not count "
                "against MAX_ATTEMPTS."
            )
        events.append((legacy.pk, EventKind.IMPORTED, actor, message, data, fields["created_at"]))
        events.extend(
            (legacy.pk, e.kind, e.actor, e.message, e.data, e.created_at) for e in legacy.events
        )
    insert_rows(BugReport, attnames, rows)
    insert_rows(BugReportEvent, EVENT_ATTNAMES, events)


def legacy_reports_group(
    *, actor: str = IMPORT_ACTOR, on_progress: Callable | None = None, one_by_one: bool = False
) -> int:
    """Group every imported report not grouped yet, oldest first; never reopens anything.

    Going through them in `created_at` order (whatever order the files were read in, and
    across batch boundaries) makes the groups the same for every run over the same reports.
    Each chunk (or, `one_by_one`, each report through `report_group` itself) is its own
    transaction, so a killed run resumes here where it stopped. Returns how many were
    grouped.
    """
    if not one_by_one:
        return legacy_reports_group_bulk(actor=actor, on_progress=on_progress)
    pending = BugReport.objects.filter(legacy_id__isnull=False, fingerprint__isnull=True)
    done = 0
    after: tuple | None = None
    while True:
        chunk = pending.order_by("created_at", "id")
        if after is not None:
            chunk = chunk.filter(
                Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1])
            )
        keys = list(chunk.values_list("created_at", "id")[:GROUP_CHUNK])
        if not keys:
            return done
        for _, pk in keys:
            # Fetched one at a time: grouping the previous report may have changed this one.
            report = BugReport.objects.filter(pk=pk, fingerprint__isnull=True).first()
            if report is not None:
                report_group(report=report, actor=actor)
                done += 1
            if on_progress is not None:
                on_progress(1)
        after = keys[-1]
