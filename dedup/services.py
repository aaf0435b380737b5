"""Grouping, regressions, merge and split: every change to dedup groups goes through here.

Lock order, everywhere: the group holding a fingerprint, then the group it forwards to,
then reports. Merges lock source groups before the target group.
"""

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from bugtracker.domain import DomainError, InvalidInput, NotFound
from bugtracker.rows import from_row, select_list
from reports.models import (
    ALLOWED_TRANSITIONS,
    DONE_STATUSES,
    BugReport,
    BugReportEvent,
    EventKind,
    Status,
)
from reports.services import _save, _status_changes, event_write
from reports.writes import Writes
from telemetry.models import Release

from .fingerprint import Fingerprint, fingerprint_for
from .models import ClientFingerprint, DedupGroup

# How often a submission retries after losing the race to create a fingerprint's group.
_CREATE_ATTEMPTS = 5
# Release ids shorter than this are never matched by prefix.
_MIN_SHA_PREFIX = 7


class GroupingConflict(DomainError):
    title = "Grouping conflict"
    type_slug = "grouping-conflict"


def dedup_window(report: BugReport) -> timedelta | None:
    """How long a group keeps catching occurrences after its last one.

    Imported legacy reports (`legacy_id`) are grouped across their whole history: the old
    files are one bug's record, and gaps in them must not split it into several canonicals.
    """
    if report.legacy_id:
        return None
    return timedelta(days=settings.DEDUP_WINDOW_DAYS)


def report_fingerprint(
    report: BugReport, client_fingerprint: list[str] | None = None
) -> Fingerprint:
    return fingerprint_for(
        title=report.title,
        stack_trace=report.stack_trace,
        component=report.component,
        route=report.route,
        client_fingerprint=client_fingerprint,
    )


def _locked_groups(*ids) -> dict:
    wanted = sorted({i for i in ids if i is not None})
    groups = DedupGroup.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    return {g.pk: g for g in groups}


def _lock_report(report_id) -> BugReport:
    try:
        return BugReport.objects.select_for_update().get(pk=report_id)
    except BugReport.DoesNotExist:
        raise NotFound(f"Bug report {report_id} does not exist.") from None


# Columns the hot path reads; the rest (`inputs`) stay deferred.
_GROUP_COLUMNS = (
    "id",
    "fingerprint",
    "algorithm_version",
    "canonical_id",
    "occurrences",
    "first_seen",
    "last_seen",
    "releases_seen",
    "active",
    "merged_into_id",
    "split_from_id",
    "created_at",
)


@cache
def _slot_query(where: str, vendor: str) -> str:
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT {select_list(DedupGroup, _GROUP_COLUMNS, 'g')}, r.status "
        f"FROM {DedupGroup._meta.db_table} g "
        f"INNER JOIN {BugReport._meta.db_table} r ON r.id = g.canonical_id "
        f"WHERE {where}{lock}"
    )


def _groups_with_canonical_status(where: str, param) -> DedupGroup | None:
    """The group matching `where`, locked with its canonical report on PostgreSQL, with its
    canonical's `canonical_status`. Raw SQL: this runs on every submission, and the
    equivalent select_related query costs more to compile than to run."""
    with connection.cursor() as cursor:
        cursor.execute(_slot_query(where, connection.vendor), [param])
        row = cursor.fetchone()
    if row is None:
        return None
    group = from_row(DedupGroup, _GROUP_COLUMNS, row)
    group.canonical_status = row[-1]
    return group


def _slot(fingerprint: str) -> DedupGroup | None:
    """The active group holding `fingerprint`, locked, with its canonical report locked too."""
    return _groups_with_canonical_status("g.fingerprint = %s AND g.active", fingerprint)


def _target(slot: DedupGroup) -> DedupGroup:
    """The group a slot's occurrences go to: itself, or the group it was merged into."""
    if slot.merged_into_id is None:
        return slot
    pk = DedupGroup._meta.pk.get_db_prep_value(slot.merged_into_id, connection)
    return _groups_with_canonical_status("g.id = %s", pk)


def _lapsed(group: DedupGroup, occurred: datetime, window: timedelta | None) -> bool:
    return window is not None and group.last_seen < occurred - window


def _retire(group: DedupGroup) -> None:
    DedupGroup.objects.filter(pk=group.pk).update(active=False)
    group.active = False


def _new_group(report: BugReport, fp: Fingerprint, **extra) -> DedupGroup | None:
    """Create the active group of `fp` with `report` as canonical; None if another won the race."""
    try:
        with transaction.atomic():
            return DedupGroup.objects.create(
                fingerprint=fp.hex,
                algorithm_version=fp.version,
                # The report may not be inserted yet (grouping prepared before the INSERT):
                # foreign keys are checked at commit.
                canonical_id=report.pk,
                occurrences=1,
                first_seen=report.created_at,
                last_seen=report.created_at,
                inputs=fp.inputs,
                releases_seen=[report.release_sha] if report.release_sha else [],
                **extra,
            )
    except IntegrityError:
        return None


# The common case of a submission, on PostgreSQL: the fingerprint's group is live (active,
# not merged into another, within the window) and its canonical open. One statement locks
# the group and its canonical (as _slot() does), counts the occurrence and, through
# Writes, inserts the report under the group with its `created` and `duplicate_linked`
# events. Anything else (no group yet, a lapsed or merged group, a resolved or closed
# canonical) writes nothing and takes the general path.
_COUNT_LIVE_SQL = f"""
WITH slot AS (
    SELECT g.id FROM {DedupGroup._meta.db_table} g
      JOIN {BugReport._meta.db_table} r ON r.id = g.canonical_id
     WHERE g.fingerprint = %s AND g.active AND g.merged_into_id IS NULL
       AND g.last_seen >= %s::timestamptz
       AND r.status NOT IN ({", ".join(f"'{s}'" for s in sorted(DONE_STATUSES))})
       FOR UPDATE
)
UPDATE {DedupGroup._meta.db_table} g
   SET occurrences = g.occurrences + 1,
       first_seen = LEAST(g.first_seen, arg.at), last_seen = GREATEST(g.last_seen, arg.at),
       releases_seen = CASE WHEN g.releases_seen @> arg.release THEN g.releases_seen
                            ELSE g.releases_seen || arg.release END
  FROM slot, (SELECT %s::timestamptz AS at, %s::jsonb AS release) AS arg
 WHERE g.id = slot.id
RETURNING g.id, g.canonical_id, g.occurrences
"""
_LINKED_MESSAGE = (
    "'Duplicate of ' || lead.canonical_id || ' (occurrence ' || lead.occurrences || ').'"
)
_LINKED_DATA = (
    "jsonb_build_object('canonical', lead.canonical_id::text, 'group', lead.id::text, "
    "'fingerprint', %s::text, 'occurrences', lead.occurrences)"
)


def _join_live_group(report: BugReport, fp: Fingerprint, *, actor: str, writes: Writes) -> bool:
    """Send `writes` (the report's INSERT and `created` event) with the occurrence counted
    on the live group of `fp`; False when there is none (nothing was written)."""
    window = dedup_window(report)
    since = report.created_at - window if window is not None else datetime.min.replace(tzinfo=UTC)
    releases = [report.release_sha] if report.release_sha else []  # [] is in every list
    field = DedupGroup._meta.get_field("releases_seen")
    params = [fp.hex, since, report.created_at, field.get_db_prep_save(releases, connection)]
    from_lead = {"dedup_group_id": "lead.id", "duplicate_of_id": "lead.canonical_id"}
    writes.lead(_COUNT_LIVE_SQL, params, expressions={report: from_lead})
    report.fingerprint, report.fingerprint_version = fp.hex, fp.version
    writes.lead_event(
        report=report,
        kind=EventKind.DUPLICATE_LINKED,
        actor=actor,
        message_sql=(_LINKED_MESSAGE, []),
        data_sql=(_LINKED_DATA, [fp.hex]),
        created_at=report.created_at,
    )
    row = writes.execute()
    if row is None:
        return False
    report.dedup_group_id, report.duplicate_of_id = row[0], row[1]
    return True


def _find_or_create(report: BugReport, fp: Fingerprint) -> tuple[DedupGroup, bool]:
    """The live group for `fp` (locked, canonical locked), or a new one with `report` canonical.

    The partial unique index `dedup_one_active_group` decides races: the loser's insert
    fails inside its savepoint, and it joins the winner's group on the next round.
    """
    window = dedup_window(report)
    for _attempt in range(_CREATE_ATTEMPTS):
        slot = _slot(fp.hex)
        if slot is not None:
            group = _target(slot)
            if not _lapsed(group, report.created_at, window):
                return group, False
            _retire(slot)
        group = _new_group(report, fp)
        if group is not None:
            return group, True
    raise GroupingConflict("Could not settle the dedup group for this fingerprint; retry.")


def _db_uuid(value):
    return DedupGroup._meta.pk.get_db_prep_value(value, connection) if value is not None else None


def _link_new(report: BugReport, *, fp: Fingerprint, group_id, canonical_id) -> None:
    """Set the grouping fields of a report inserted in this same transaction.

    No version bump: grouping is part of the report's creation. Raw SQL, compare-and-set on
    the version: this runs on every submission.
    """
    sql = (
        f"UPDATE {BugReport._meta.db_table} SET fingerprint = %s, fingerprint_version = %s, "
        "dedup_group_id = %s, duplicate_of_id = %s WHERE id = %s AND version = %s"
    )
    params = [
        fp.hex,
        fp.version,
        _db_uuid(group_id),
        _db_uuid(canonical_id),
        _db_uuid(report.pk),
        report.version,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            raise GroupingConflict("The report changed while it was being grouped; retry.")
    report.fingerprint, report.fingerprint_version = fp.hex, fp.version
    report.dedup_group_id, report.duplicate_of_id = group_id, canonical_id


def _sha_matches(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    shorter, longer = sorted((a.lower(), b.lower()), key=len)
    return len(shorter) >= _MIN_SHA_PREFIX and longer.startswith(shorter)


def _done_since(canonical: BugReport) -> datetime:
    """When the canonical entered resolved/closed (closed without resolving has no resolved_at)."""
    if canonical.resolved_at:
        return canonical.resolved_at
    event = (
        BugReportEvent.objects.filter(
            report=canonical,
            kind__in=[EventKind.STATUS_CHANGED, EventKind.RESOLVED],
            data__to__in=list(DONE_STATUSES),
        )
        .order_by("-created_at", "-id")
        .first()
    )
    return event.created_at if event else canonical.updated_at


def stale_reason(*, group: DedupGroup, canonical: BugReport, release: str | None) -> str | None:
    """Why an occurrence of a resolved/closed canonical must not reopen it, or None.

    Stale: from the release named at resolution, from a release the group had already seen
    before the resolution, or from one the registry shows deployed before it. An occurrence
    without a release cannot be shown to be stale: it is a regression.
    """
    if not release:
        return None
    if _sha_matches(release, canonical.resolved_in_release):
        return "resolved_in_release"
    done_at = _done_since(canonical)
    if release in (group.releases_seen or []):
        seen_before = BugReport.objects.filter(
            dedup_group=group, release_sha=release, created_at__lt=done_at
        ).exists()
        if seen_before:
            return "seen_before_resolution"
    registry = Release.objects.filter(deployed_at__lt=done_at)
    prefix = Q(sha=release)
    if len(release) >= _MIN_SHA_PREFIX:
        prefix |= Q(sha__startswith=release)
    if registry.filter(prefix).exists():
        return "deployed_before_resolution"
    return None


def _count_occurrence(group: DedupGroup, report: BugReport, writes: Writes) -> None:
    """One more occurrence on a locked group, sent with `writes`."""
    group.occurrences += 1
    group.first_seen = min(group.first_seen, report.created_at)
    group.last_seen = max(group.last_seen, report.created_at)
    if report.release_sha and report.release_sha not in group.releases_seen:
        group.releases_seen = [*group.releases_seen, report.release_sha]
    fields = [
        DedupGroup._meta.get_field(name)
        for name in ("occurrences", "first_seen", "last_seen", "releases_seen", "id")
    ]
    writes.add(
        f"UPDATE {DedupGroup._meta.db_table} SET occurrences = %s, first_seen = %s, "
        "last_seen = %s, releases_seen = %s WHERE id = %s",
        [f.get_db_prep_save(getattr(group, f.attname), connection) for f in fields],
    )


def _reopen(canonical: BugReport, *, report: BugReport, actor: str) -> None:
    before = canonical.status
    done_at = _done_since(canonical)
    _save(canonical, _status_changes(canonical, Status.TRIAGED))
    event_write(
        report=canonical,
        kind=EventKind.REGRESSED,
        actor=actor,
        message=(
            f"Regressed: {report.pk} occurred"
            + (f" in release {report.release_sha}" if report.release_sha else "")
            + f" after the resolution at {done_at.isoformat()}; {before} → {Status.TRIAGED}."
        ),
        data={
            "from": before,
            "to": Status.TRIAGED,
            "report": str(report.pk),
            "release": report.release_sha,
            "resolved_at": done_at.isoformat(),
            "resolved_in_release": canonical.resolved_in_release,
        },
    )


def _follow_done_canonical(report: BugReport, canonical: BugReport, *, actor: str, reason: str):
    """A stale occurrence of a fixed bug is only counted: it follows its canonical's status."""
    before = report.status
    if before in DONE_STATUSES or canonical.status not in ALLOWED_TRANSITIONS.get(before, ()):
        return
    _save(report, _status_changes(report, canonical.status))
    event_write(
        report=report,
        kind=EventKind.RESOLVED
        if canonical.status == Status.RESOLVED
        else EventKind.STATUS_CHANGED,
        actor=actor,
        message=f"Stale occurrence ({reason}) of {canonical.status} report {canonical.pk}.",
        data={
            "from": before,
            "to": canonical.status,
            "canonical": str(canonical.pk),
            "stale": reason,
        },
    )


@dataclass
class PendingGrouping:
    """Grouping decided before a report's INSERT, finished with it."""

    report: BugReport
    fp: Fingerprint
    client_parts: list[str] | None
    group: DedupGroup | None = None  # None: the report was created naming its canonical
    created: bool = False

    def finish(self, *, actor: str, reopen: bool = True, writes: Writes | None = None):
        """Send `writes` (the report's INSERT and `created` event, on submission) together
        with the occurrence count and `duplicate_linked` event, then what depends on them."""
        report, fp = self.report, self.fp
        writes = writes or Writes()
        if self.group is None:
            writes.execute()
            group = _link_given_duplicate(report, fp, actor=actor)
        else:
            group = self.group
            canonical, stale = None, None
            if not self.created:
                canonical, stale = _count_duplicate(
                    group, report=report, actor=actor, fp=fp, writes=writes
                )
            writes.execute()
            if canonical is not None and reopen:
                if stale is None:
                    _reopen(canonical, report=report, actor=actor)
                else:
                    _follow_done_canonical(report, canonical, actor=actor, reason=stale)
        _keep_client_parts(report, fp, self.client_parts)
        return group


def _keep_client_parts(report: BugReport, fp: Fingerprint, parts: list[str] | None) -> None:
    if fp.inputs.get("kind") == "client":
        ClientFingerprint.objects.update_or_create(
            report_id=report.pk, defaults={"parts": list(parts or [])}
        )


def report_group_new(
    *, report: BugReport, actor: str, writes: Writes, client_fingerprint: list[str] | None = None
) -> None:
    """File a report that is being submitted under its group, sending `writes` (its INSERT
    and `created` event) together with the grouping's own writes.

    On PostgreSQL, joining a live group is one statement (_join_live_group). Otherwise (no
    live group, or not PostgreSQL) the group is settled first (report_group_prepare) and the
    writes go with the grouping's own.
    """
    if connection.vendor == "postgresql" and report.duplicate_of_id is None:
        fp = report_fingerprint(report, client_fingerprint)
        if _join_live_group(report, fp, actor=actor, writes=writes):
            _keep_client_parts(report, fp, client_fingerprint)
            return
        # Nothing was written: settle the group first, as elsewhere.
    pending = report_group_prepare(report=report, client_fingerprint=client_fingerprint)
    pending.finish(actor=actor, writes=writes)


def report_group_prepare(
    *, report: BugReport, client_fingerprint: list[str] | None = None
) -> PendingGrouping:
    """Fingerprint `report` and settle its group (locked) before the report is inserted.

    Sets `fingerprint`, `fingerprint_version`, `dedup_group` and `duplicate_of` on the
    unsaved report, so submission writes them with its INSERT instead of updating the row
    afterwards. Call `finish()` once the report and its `created` event are in.
    """
    fp = report_fingerprint(report, client_fingerprint)
    pending = PendingGrouping(report=report, fp=fp, client_parts=client_fingerprint)
    if report.duplicate_of_id is not None:
        return pending
    pending.group, pending.created = _find_or_create(report, fp)
    report.fingerprint, report.fingerprint_version = fp.hex, fp.version
    report.dedup_group_id = pending.group.pk
    report.duplicate_of_id = None if pending.created else pending.group.canonical_id
    return pending


def report_group(
    *,
    report: BugReport,
    actor: str,
    reopen: bool = True,
    client_fingerprint: list[str] | None = None,
) -> DedupGroup:
    """Fingerprint an inserted report and file it under its group.

    The report becomes canonical of a new group, or a duplicate of the live group's
    canonical (`occurrences` +1). A resolved or closed canonical is reopened (`regressed`)
    unless the occurrence is stale; with `reopen=False` (imports) nothing is ever reopened.
    `report.created_at` is the occurrence time. A report already grouped is left alone.
    """
    if report.dedup_group_id is not None:
        return report.dedup_group
    # No savepoint of its own: a failure here fails the submission it is part of.
    with transaction.atomic(savepoint=False):
        pending = report_group_prepare(report=report, client_fingerprint=client_fingerprint)
        if pending.group is not None:
            _link_new(
                report,
                fp=pending.fp,
                group_id=pending.group.pk,
                canonical_id=report.duplicate_of_id,
            )
        return pending.finish(actor=actor, reopen=reopen)


def _link_given_duplicate(report: BugReport, fp: Fingerprint, *, actor: str) -> DedupGroup:
    """A report created already naming its canonical joins that canonical's group."""
    canonical = _get(report.duplicate_of_id)
    if canonical.dedup_group_id is None and canonical.duplicate_of_id is None:
        report_group(report=canonical, actor=actor, reopen=False)
        canonical.refresh_from_db()
    if canonical.duplicate_of_id is not None:  # never a chain
        canonical = _get(canonical.duplicate_of_id)
    group = _locked_groups(canonical.dedup_group_id)[canonical.dedup_group_id]
    _link_new(report, fp=fp, group_id=group.pk, canonical_id=canonical.pk)
    writes = Writes()
    _count_occurrence(group, report, writes)
    writes.event(
        report=report,
        kind=EventKind.DUPLICATE_LINKED,
        actor=actor,
        message=f"Duplicate of {canonical.pk} (occurrence {group.occurrences}).",
        data={"canonical": str(canonical.pk), "group": str(group.pk), "fingerprint": fp.hex},
        created_at=report.created_at,
    )
    writes.execute()
    return group


def _count_duplicate(
    group: DedupGroup, *, report: BugReport, actor: str, fp: Fingerprint, writes: Writes
) -> tuple[BugReport | None, str | None]:
    """Count `report` on its locked group, with its `duplicate_linked` event, in `writes`.

    Returns the canonical when it is resolved or closed (None otherwise), and why this
    occurrence is stale (None: it is a regression): what follows once the writes are in.
    """
    canonical, stale = None, None
    if group.canonical_status in DONE_STATUSES:
        # The rare case needs the whole canonical; it is already locked by the slot query.
        canonical = _lock_report(group.canonical_id)
        # Decided before this occurrence's release joins releases_seen.
        stale = stale_reason(group=group, canonical=canonical, release=report.release_sha)
    _count_occurrence(group, report, writes)
    data = {
        "canonical": str(group.canonical_id),
        "group": str(group.pk),
        "fingerprint": fp.hex,
        "occurrences": group.occurrences,
    }
    if stale:
        data["stale"] = stale
    writes.event(
        report=report,
        kind=EventKind.DUPLICATE_LINKED,
        actor=actor,
        message=f"Duplicate of {group.canonical_id} (occurrence {group.occurrences}).",
        data=data,
        created_at=report.created_at,
    )
    return canonical, stale


def group_occurrences_for(report: BugReport) -> int:
    """How many times the report's bug occurred (1 for an ungrouped report)."""
    if report.dedup_group_id is None:
        return 1
    return (
        DedupGroup.objects.filter(pk=report.dedup_group_id)
        .values_list("occurrences", flat=True)
        .first()
        or 1
    )


# Merge and split ----------------------------------------------------------------------------


def _ensure_grouped(report: BugReport, actor: str) -> BugReport:
    """Reports that predate grouping get their group before a merge or split touches them."""
    if report.dedup_group_id is None:
        report_group(report=report, actor=actor, reopen=False)
        report.refresh_from_db()
    return report


def _get(report_id) -> BugReport:
    try:
        return BugReport.objects.get(pk=report_id)
    except (BugReport.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Bug report {report_id} does not exist.") from None


def report_merge(*, report_id, into_id, actor: str) -> BugReport:
    """Make a report (with its duplicates) duplicates of `into`'s canonical report.

    `into` may be a duplicate: its canonical is meant. Occurrences add up and the merged
    group forwards later occurrences of its fingerprint, so the merge sticks. Merging a
    duplicate moves that one report.
    """
    with transaction.atomic():
        source = _ensure_grouped(_get(report_id), actor)
        try:
            into = _ensure_grouped(_get(into_id), actor)
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
        target = _ensure_grouped(_get(target_id), actor)
        if source.duplicate_of_id is None:
            forwarding = list(
                DedupGroup.objects.filter(merged_into_id=source.dedup_group_id).values_list(
                    "pk", flat=True
                )
            )
            groups = _locked_groups(*forwarding, source.dedup_group_id, target.dedup_group_id)
        else:
            groups = _locked_groups(source.dedup_group_id, target.dedup_group_id)
        target_group = groups[target.dedup_group_id]
        source_group = groups[source.dedup_group_id]
        locked_source = _lock_report(source.pk)
        locked_target = _lock_report(target.pk)
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
        event_write(
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
    event_write(
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
        _save(report, {"duplicate_of_id": target.pk, "dedup_group_id": target_group.pk})
        _moved_event(
            report,
            into=target,
            group=target_group,
            from_canonical=previous or source.pk,
            actor=actor,
        )
    target_group.occurrences += max(source_group.occurrences, len(moved))
    target_group.first_seen = min(target_group.first_seen, source_group.first_seen)
    target_group.last_seen = max(target_group.last_seen, source_group.last_seen)
    releases = list(target_group.releases_seen)
    releases += [r for r in source_group.releases_seen if r not in releases]
    target_group.releases_seen = releases
    target_group.save(update_fields=["occurrences", "first_seen", "last_seen", "releases_seen"])
    # Forward the source's fingerprint (and whatever already forwarded to it): no chains.
    DedupGroup.objects.filter(Q(pk=source_group.pk) | Q(merged_into=source_group)).update(
        merged_into=target_group
    )
    return moved


def _move_one(report, source_group, target, target_group, *, actor) -> None:
    previous = report.duplicate_of_id
    _save(report, {"duplicate_of_id": target.pk, "dedup_group_id": target_group.pk})
    _moved_event(report, into=target, group=target_group, from_canonical=previous, actor=actor)
    if source_group.occurrences > 1:
        source_group.occurrences -= 1
        source_group.save(update_fields=["occurrences"])
    target_group.occurrences += 1
    target_group.first_seen = min(target_group.first_seen, report.created_at)
    target_group.last_seen = max(target_group.last_seen, report.created_at)
    if report.release_sha and report.release_sha not in target_group.releases_seen:
        target_group.releases_seen = [*target_group.releases_seen, report.release_sha]
    target_group.save(update_fields=["occurrences", "first_seen", "last_seen", "releases_seen"])


def report_split(*, report_id, actor: str) -> BugReport:
    """Detach a duplicate into a canonical report of its own group.

    The new group takes over the report's fingerprint, so later occurrences of it go to the
    split-off report and a regroup never folds it back: a split stays split.
    """
    with transaction.atomic():
        report = _get(report_id)
        if report.duplicate_of_id is None:
            raise DomainError(f"Report {report.pk} is not a duplicate; there is nothing to split.")
        fp = report_fingerprint(report, _client_parts(report.pk))
        for _attempt in range(_CREATE_ATTEMPTS):
            holder = (
                DedupGroup.objects.filter(fingerprint=fp.hex, active=True)
                .values_list("pk", flat=True)
                .first()
            )
            groups = _locked_groups(report.dedup_group_id, holder)
            locked = _lock_report(report.pk)
            canonical_id = locked.duplicate_of_id
            if canonical_id != report.duplicate_of_id:
                raise GroupingConflict("The report changed while splitting; retry.")
            if holder is not None:
                if not groups[holder].active:
                    continue
                _retire(groups[holder])
            old_group = groups.get(report.dedup_group_id)
            group = _new_group(locked, fp, split_from=old_group)
            if group is not None:
                break
        else:
            raise GroupingConflict("Could not settle the dedup group for this fingerprint; retry.")
        if old_group is not None and old_group.occurrences > 1:
            old_group.occurrences -= 1
            old_group.save(update_fields=["occurrences"])
        _save(
            locked,
            {
                "duplicate_of_id": None,
                "dedup_group_id": group.pk,
                "fingerprint": fp.hex,
                "fingerprint_version": fp.version,
            },
        )
        event_write(
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
        event_write(
            report=canonical,
            kind=EventKind.SPLIT,
            actor=actor,
            message=f"{locked.pk} was split off into a group of its own.",
            data={"role": "canonical", "report": str(locked.pk), "group": str(group.pk)},
        )
        return locked


def _client_parts(report_id) -> list[str] | None:
    return (
        ClientFingerprint.objects.filter(report_id=report_id)
        .values_list("parts", flat=True)
        .first()
    )


# Regroup ----------------------------------------------------------------------------------


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
        holder = _slot(fp.hex)
        if holder is not None and holder.pk != group.pk:
            if take_slot or _lapsed(
                _target(holder), group.last_seen, dedup_window(group.canonical)
            ):
                _retire(holder)
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
        event_write(
            report=report,
            kind=kind,
            actor=self.actor,
            message=message,
            data={**data, "reason": "regroup"},
        )

    def run_one(self, report_id, client_parts) -> None:
        report = _lock_report(report_id)
        self.summary.scanned += 1
        if report.dedup_group_id is None:
            self.remember(report)
            report_group(
                report=report, actor=self.actor, reopen=False, client_fingerprint=client_parts
            )
            self.summary.fingerprints_changed += 1
            return
        fp = report_fingerprint(report, client_parts)
        if report.fingerprint == fp.hex and report.fingerprint_version == fp.version:
            return
        self.summary.fingerprints_changed += 1
        self.remember(report)
        group = _locked_groups(report.dedup_group_id)[report.dedup_group_id]
        is_canonical = report.duplicate_of_id is None and group.canonical_id == report.pk
        if report.pk in self.pinned or (is_canonical and group.split_from_id is not None):
            self.keep_place(report, group, fp, is_canonical=is_canonical)
        elif report.duplicate_of_id is not None:
            self.regroup_duplicate(report, group, fp)
        else:
            self.regroup_canonical(report, group, fp)

    def set_fingerprint(self, report, fp) -> None:
        before = report.fingerprint
        _save(report, {"fingerprint": fp.hex, "fingerprint_version": fp.version})
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
        new_group, created = _find_or_create(report, fp)
        if not created and new_group.pk == group.pk:
            self.set_fingerprint(report, fp)
            return
        previous = report.duplicate_of_id
        if group.occurrences > 1:
            group.occurrences -= 1
            group.save(update_fields=["occurrences"])
        changes = {
            "fingerprint": fp.hex,
            "fingerprint_version": fp.version,
            "dedup_group_id": new_group.pk,
        }
        if created:
            self.summary.groups_created += 1
            _save(report, {**changes, "duplicate_of_id": None})
            self.event(
                report,
                EventKind.FIELD_CHANGED,
                "No longer a duplicate: its recomputed fingerprint starts a group of its own.",
                field="duplicate_of",
                **{"from": str(previous), "to": None, "group": str(new_group.pk)},
            )
            return
        _save(report, {**changes, "duplicate_of_id": new_group.canonical_id})
        writes = Writes()
        _count_occurrence(new_group, report, writes)
        writes.execute()
        self.event(
            report,
            EventKind.DUPLICATE_LINKED,
            f"Duplicate of {new_group.canonical_id} after regrouping.",
            canonical=str(new_group.canonical_id),
            from_canonical=str(previous),
            group=str(new_group.pk),
        )

    def regroup_canonical(self, report, group, fp) -> None:
        slot = _slot(fp.hex)
        if slot is not None and slot.pk != group.pk:
            target = _target(slot)
            if target.pk != group.pk and not _lapsed(
                target, report.created_at, dedup_window(report)
            ):
                self.join(report, group, target, fp)
                return
            if target.pk != group.pk:
                _retire(slot)
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
            _save(member, changes)
            self.event(
                member,
                EventKind.DUPLICATE_LINKED,
                f"Duplicate of {target.canonical_id} after regrouping.",
                canonical=str(target.canonical_id),
                from_canonical=str(report.pk),
                group=str(target.pk),
            )
        target.occurrences += max(group.occurrences, len(members) + 1)
        target.first_seen = min(target.first_seen, group.first_seen)
        target.last_seen = max(target.last_seen, group.last_seen)
        target.releases_seen = [
            *target.releases_seen,
            *[r for r in group.releases_seen if r not in target.releases_seen],
        ]
        target.save(update_fields=["occurrences", "first_seen", "last_seen", "releases_seen"])
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


def group_release_learned(*, group_id, release_sha: str) -> None:
    """A release learned after grouping (the enrichment job filled an occurrence's release):
    the group has seen it too. Locks the group; call it before touching the report (lock order).
    """
    if not group_id or not release_sha:
        return
    group = DedupGroup.objects.select_for_update().only("id", "releases_seen").get(pk=group_id)
    if release_sha not in group.releases_seen:
        group.releases_seen = [*group.releases_seen, release_sha]
        group.save(update_fields=["releases_seen"])
