"""Merge and split: the changes to grouping that people make by hand (admin API)."""

from django.db import transaction
from django.db.models import Q

from bugtracker.domain import DomainError, InvalidInput, NotFound
from reports.lifecycle import lock_report, save_changes, write_event
from reports.models import BugReport, EventKind

from . import rules
from .grouping import ensure_grouped
from .groups import (
    CREATE_ATTEMPTS,
    TALLY_FIELDS,
    GroupingConflict,
    client_parts,
    get_report,
    lock_groups,
    new_group,
    report_fingerprint,
    retire,
    take_in_group,
    take_off,
)
from .models import DedupGroup


def report_merge(*, report_id, into_id, actor: str) -> BugReport:
    """Make a report (with its duplicates) duplicates of `into`'s canonical report.

    `into` may be a duplicate: its canonical is meant. Occurrences add up and the merged
    group forwards later occurrences of its fingerprint, so the merge sticks. Merging a
    duplicate moves that one report.
    """
    with transaction.atomic():
        source = ensure_grouped(get_report(report_id), actor)
        try:
            into = ensure_grouped(get_report(into_id), actor)
        except NotFound:
            raise InvalidInput("into", f"No bug report {into_id}.") from None
        target_id = into.duplicate_of_id or into.pk
        if target_id in (source.pk, source.duplicate_of_id):
            already = target_id == source.duplicate_of_id
            raise DomainError(
                f"Report {source.pk} is already a duplicate of {target_id}."
                if already
                else "A report cannot be merged into itself or one of its own duplicates.",
                canonical=str(target_id),
            )
        target = ensure_grouped(get_report(target_id), actor)
        if source.duplicate_of_id is None:
            forwarding = list(
                DedupGroup.objects.filter(merged_into_id=source.dedup_group_id).values_list(
                    "pk", flat=True
                )
            )
            groups = lock_groups(*forwarding, source.dedup_group_id, target.dedup_group_id)
        else:
            groups = lock_groups(source.dedup_group_id, target.dedup_group_id)
        target_group = groups[target.dedup_group_id]
        source_group = groups[source.dedup_group_id]
        locked_source = lock_report(source.pk)
        locked_target = lock_report(target.pk)
        if (
            locked_target.duplicate_of_id is not None
            or locked_source.duplicate_of_id != source.duplicate_of_id
            or target_group.merged_into_id is not None
        ):
            raise GroupingConflict("The reports changed while merging; retry.")
        if locked_source.duplicate_of_id is None:
            moved = _merge_group(
                locked_source, source_group, locked_target, target_group, actor=actor
            )
        else:
            moved = [locked_source]
            _move_one(locked_source, source_group, locked_target, target_group, actor=actor)
        write_event(
            report=locked_target,
            kind=EventKind.MERGED,
            actor=actor,
            message=f"Merged {locked_source.pk} ({len(moved)} reports) into this report.",
            data={
                "role": "target",
                "from": str(locked_source.pk),
                "moved": len(moved),
                "group": str(target_group.pk),
                "occurrences": target_group.occurrences,
            },
        )
        locked_source.refresh_from_db()
        return locked_source


def _moved_event(report, *, into: BugReport, group: DedupGroup, from_canonical, actor):
    write_event(
        report=report,
        kind=EventKind.MERGED,
        actor=actor,
        message=f"Merged into {into.pk}.",
        data={
            "role": "moved",
            "into": str(into.pk),
            "from_canonical": str(from_canonical) if from_canonical else None,
            "group": str(group.pk),
        },
    )


def _merge_group(source, source_group, target, target_group, *, actor) -> list[BugReport]:
    members = list(
        BugReport.objects.select_for_update()
        .filter(Q(duplicate_of=source) | Q(dedup_group=source_group))
        .exclude(pk=source.pk)
        .order_by("pk")
    )
    moved = [source, *members]
    for report in moved:
        previous = report.duplicate_of_id
        save_changes(report, {"duplicate_of_id": target.pk, "dedup_group_id": target_group.pk})
        _moved_event(
            report,
            into=target,
            group=target_group,
            from_canonical=previous or source.pk,
            actor=actor,
        )
    take_in_group(target_group, source_group, members=len(moved))
    # Forward the source's fingerprint (and whatever already forwarded to it): no chains.
    DedupGroup.objects.filter(Q(pk=source_group.pk) | Q(merged_into=source_group)).update(
        merged_into=target_group
    )
    return moved


def _move_one(report, source_group, target, target_group, *, actor) -> None:
    previous = report.duplicate_of_id
    save_changes(report, {"duplicate_of_id": target.pk, "dedup_group_id": target_group.pk})
    _moved_event(report, into=target, group=target_group, from_canonical=previous, actor=actor)
    take_off(source_group)
    rules.count_occurrence(target_group, at=report.created_at, release=report.release_sha)
    target_group.save(update_fields=TALLY_FIELDS)


def report_split(*, report_id, actor: str) -> BugReport:
    """Detach a duplicate into a canonical report of its own group.

    The new group takes over the report's fingerprint, so later occurrences of it go to the
    split-off report and a regroup never folds it back: a split stays split.
    """
    with transaction.atomic():
        report = get_report(report_id)
        if report.duplicate_of_id is None:
            raise DomainError(f"Report {report.pk} is not a duplicate; there is nothing to split.")
        fp = report_fingerprint(report, client_parts(report.pk))
        for _attempt in range(CREATE_ATTEMPTS):
            holder = (
                DedupGroup.objects.filter(fingerprint=fp.hex, active=True)
                .values_list("pk", flat=True)
                .first()
            )
            groups = lock_groups(report.dedup_group_id, holder)
            locked = lock_report(report.pk)
            canonical_id = locked.duplicate_of_id
            if canonical_id != report.duplicate_of_id:
                raise GroupingConflict("The report changed while splitting; retry.")
            if holder is not None:
                if not groups[holder].active:
                    continue
                retire(groups[holder])
            old_group = groups.get(report.dedup_group_id)
            group = new_group(locked, fp, split_from=old_group)
            if group is not None:
                break
        else:
            raise GroupingConflict("Could not settle the dedup group for this fingerprint; retry.")
        if old_group is not None:
            take_off(old_group)
        save_changes(
            locked,
            {
                "duplicate_of_id": None,
                "dedup_group_id": group.pk,
                "fingerprint": fp.hex,
                "fingerprint_version": fp.version,
            },
        )
        write_event(
            report=locked,
            kind=EventKind.SPLIT,
            actor=actor,
            message=f"Split off from {canonical_id} into a group of its own.",
            data={
                "role": "split",
                "from_canonical": str(canonical_id),
                "from_group": str(old_group.pk) if old_group else None,
                "group": str(group.pk),
            },
        )
        canonical = BugReport.objects.get(pk=canonical_id)
        write_event(
            report=canonical,
            kind=EventKind.SPLIT,
            actor=actor,
            message=f"{locked.pk} was split off into a group of its own.",
            data={"role": "canonical", "report": str(locked.pk), "group": str(group.pk)},
        )
        return locked
