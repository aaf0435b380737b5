"""`dedup_regroup`: recompute every fingerprint with the current rules and regroup what changed."""

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from bugtracker.domain import InvalidInput
from reports.lifecycle import lock_report, save_changes, write_event
from reports.models import BugReport, BugReportEvent, EventKind
from reports.writes import Writes

from .fingerprint import Fingerprint
from .grouping import report_group
from .groups import (
    active_slot,
    count_on,
    dedup_window,
    find_or_create,
    group_lapsed,
    lock_groups,
    report_fingerprint,
    retire,
    slot_target,
    take_in_group,
    take_off,
)
from .models import ClientFingerprint, DedupGroup


@dataclass
class RegroupSummary:
    scanned: int = 0
    fingerprints_changed: int = 0
    moved: int = 0
    groups_created: int = 0
    dry_run: bool = False
    moved_ids: list = field(default_factory=list)


def _pinned_report_ids() -> set:
    """Reports placed by hand (merged or split): a regroup leaves them where they are."""
    manual = Q(kind=EventKind.MERGED, data__role="moved") | Q(
        kind=EventKind.SPLIT, data__role="split"
    )
    return set(BugReportEvent.objects.filter(manual).values_list("report_id", flat=True))


def _rekey(group: DedupGroup, fp: Fingerprint, *, take_slot: bool = False) -> None:
    """Give a group a recomputed fingerprint; it stays active only if the slot is free."""
    changes: dict[str, Any] = {
        "fingerprint": fp.hex,
        "algorithm_version": fp.version,
        "inputs": fp.inputs,
    }
    if group.active:
        holder = active_slot(fp.hex)
        if holder is not None and holder.pk != group.pk:
            if take_slot or group_lapsed(
                slot_target(holder), group.last_seen, dedup_window(group.canonical)
            ):
                retire(holder)
            else:
                changes["active"] = False
    try:
        with transaction.atomic():
            DedupGroup.objects.filter(pk=group.pk).update(**changes)
    except IntegrityError:  # a live submission took the slot meanwhile
        changes["active"] = False
        DedupGroup.objects.filter(pk=group.pk).update(**changes)
    for name, value in changes.items():
        setattr(group, name, value)


class _Regroup:
    """One `dedup_regroup` run: reports in `created_at` order, regrouped as submission would."""

    def __init__(self, *, actor: str, summary: RegroupSummary):
        self.actor = actor
        self.summary = summary
        self.pinned = _pinned_report_ids()
        self.original: dict = {}

    def remember(self, report: BugReport) -> None:
        self.original.setdefault(report.pk, report.duplicate_of_id or report.pk)

    def event(self, report, kind, message, **data):
        write_event(
            report=report,
            kind=kind,
            actor=self.actor,
            message=message,
            data={**data, "reason": "regroup"},
        )

    def run_one(self, report_id, client_parts) -> None:
        report = lock_report(report_id)
        self.summary.scanned += 1
        if report.dedup_group_id is None:
            self.remember(report)
            report_group(report=report, actor=self.actor, client_fingerprint=client_parts)
            self.summary.fingerprints_changed += 1
            return
        fp = report_fingerprint(report, client_parts)
        if report.fingerprint == fp.hex and report.fingerprint_version == fp.version:
            return
        self.summary.fingerprints_changed += 1
        self.remember(report)
        group = lock_groups(report.dedup_group_id)[report.dedup_group_id]
        is_canonical = report.duplicate_of_id is None and group.canonical_id == report.pk
        if report.pk in self.pinned or (is_canonical and group.split_from_id is not None):
            self.keep_place(report, group, fp, is_canonical=is_canonical)
        elif report.duplicate_of_id is not None:
            self.regroup_duplicate(report, group, fp)
        else:
            self.regroup_canonical(report, group, fp)

    def set_fingerprint(self, report, fp) -> None:
        before = report.fingerprint
        save_changes(report, {"fingerprint": fp.hex, "fingerprint_version": fp.version})
        self.event(
            report,
            EventKind.FIELD_CHANGED,
            "fingerprint recomputed",
            field="fingerprint",
            **{"from": before, "to": fp.hex},
        )

    def keep_place(self, report, group, fp, *, is_canonical: bool) -> None:
        old = report.fingerprint
        self.set_fingerprint(report, fp)
        if is_canonical and group.fingerprint == old:
            _rekey(group, fp, take_slot=group.split_from_id is not None)
        forwarding = DedupGroup.objects.select_for_update().filter(
            canonical=report, merged_into__isnull=False, fingerprint=old
        )
        for forwarder in forwarding:
            _rekey(forwarder, fp)

    def regroup_duplicate(self, report, group, fp) -> None:
        if group.fingerprint == fp.hex:  # its canonical was recomputed to the same fingerprint
            self.set_fingerprint(report, fp)
            return
        joined, created = find_or_create(report, fp)
        if not created and joined.pk == group.pk:
            self.set_fingerprint(report, fp)
            return
        previous = report.duplicate_of_id
        take_off(group)
        changes = {
            "fingerprint": fp.hex,
            "fingerprint_version": fp.version,
            "dedup_group_id": joined.pk,
        }
        if created:
            self.summary.groups_created += 1
            save_changes(report, {**changes, "duplicate_of_id": None})
            self.event(
                report,
                EventKind.FIELD_CHANGED,
                "No longer a duplicate: its recomputed fingerprint starts a group of its own.",
                field="duplicate_of",
                **{"from": str(previous), "to": None, "group": str(joined.pk)},
            )
            return
        save_changes(report, {**changes, "duplicate_of_id": joined.canonical_id})
        writes = Writes()
        count_on(joined, report, writes)
        writes.execute()
        self.event(
            report,
            EventKind.DUPLICATE_LINKED,
            f"Duplicate of {joined.canonical_id} after regrouping.",
            canonical=str(joined.canonical_id),
            from_canonical=str(previous),
            group=str(joined.pk),
        )

    def regroup_canonical(self, report, group, fp) -> None:
        slot = active_slot(fp.hex)
        if slot is not None and slot.pk != group.pk:
            target = slot_target(slot)
            if target.pk != group.pk and not group_lapsed(
                target, report.created_at, dedup_window(report)
            ):
                self.join(report, group, target, fp)
                return
            if target.pk != group.pk:
                retire(slot)
        _rekey(group, fp)
        self.set_fingerprint(report, fp)

    def join(self, report, group, target, fp) -> None:
        """A canonical whose fingerprint now matches a live group joins it with its duplicates
        (each duplicate is re-examined in its turn)."""
        members = list(
            BugReport.objects.select_for_update().filter(duplicate_of=report).order_by("pk")
        )
        for member in [report, *members]:
            self.remember(member)
            changes: dict[str, Any] = {
                "duplicate_of_id": target.canonical_id,
                "dedup_group_id": target.pk,
            }
            if member.pk == report.pk:
                changes.update(fingerprint=fp.hex, fingerprint_version=fp.version)
            save_changes(member, changes)
            self.event(
                member,
                EventKind.DUPLICATE_LINKED,
                f"Duplicate of {target.canonical_id} after regrouping.",
                canonical=str(target.canonical_id),
                from_canonical=str(report.pk),
                group=str(target.pk),
            )
        take_in_group(target, group, members=len(members) + 1)
        DedupGroup.objects.filter(Q(pk=group.pk) | Q(merged_into=group)).update(
            merged_into=target, active=False
        )

    def count_moves(self) -> None:
        ids = list(self.original)
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            now = BugReport.objects.filter(pk__in=chunk).values_list("pk", "duplicate_of_id")
            for pk, duplicate_of in now:
                if (duplicate_of or pk) != self.original[pk]:
                    self.summary.moved += 1
                    if len(self.summary.moved_ids) < 100:
                        self.summary.moved_ids.append(pk)


def groups_regroup(
    *, actor: str = "dedup_regroup", batch_size: int = 500, dry_run: bool = False, progress=None
) -> RegroupSummary:
    """Recompute every report's fingerprint with the current rules and regroup what changed.

    Reports are taken in `created_at` order, one transaction per batch, and grouped as a
    submission would group them now (same window, never reopening). Merges and splits made
    by hand stay. With `dry_run`, everything runs in one transaction that is rolled back:
    the summary says how many reports would move.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size", "batch_size must be at least 1.")
    summary = RegroupSummary(dry_run=dry_run)
    run = _Regroup(actor=actor, summary=summary)
    # Outside a dry run each batch commits on its own; a dry run wraps them all and rolls back.
    with transaction.atomic() if dry_run else nullcontext():
        cursor = None
        while True:
            rows = BugReport.objects.order_by("created_at", "pk").values_list("pk", "created_at")
            if cursor is not None:
                rows = rows.filter(
                    Q(created_at__gt=cursor[1]) | Q(created_at=cursor[1], pk__gt=cursor[0])
                )
            batch = list(rows[:batch_size])
            if not batch:
                break
            ids = [pk for pk, _ in batch]
            client = dict(
                ClientFingerprint.objects.filter(report_id__in=ids).values_list(
                    "report_id", "parts"
                )
            )
            with transaction.atomic():
                for pk in ids:
                    run.run_one(pk, client.get(pk))
            cursor = batch[-1]
            if progress is not None:
                progress(summary)
        run.count_moves()
        if dry_run:
            transaction.set_rollback(True)
    return summary
