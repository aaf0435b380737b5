"""Grouping a report: fingerprint it, settle its group, count the occurrence, decide what follows.

Grouping writes its own rows (groups, their counts, the report's grouping columns and its
`duplicate_linked` event) and returns an outcome, `Grouped`; a status move that follows from
it (a regression reopening a fixed canonical, a stale occurrence following it) is named in
the outcome and made by the caller (`reports/services.py`), through reports' lifecycle.
The rules themselves are in `dedup/rules.py`, the group rows' primitives in `groups.py`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Min, Q

from bugtracker.sql import jsonb_object_sql, text_sql
from reports.models import (
    ALLOWED_TRANSITIONS,
    DONE_STATUSES,
    BugReport,
    BugReportEvent,
    EventKind,
    Status,
)
from reports.writes import Writes
from telemetry.models import Release

from . import rules
from .fingerprint import Fingerprint
from .groups import (
    GroupingConflict,
    count_on,
    dedup_window,
    find_or_create,
    get_report,
    lock_groups,
    report_fingerprint,
    tally_sql,
)
from .models import ClientFingerprint, DedupGroup


@dataclass(frozen=True)
class StatusMove:
    """A status move that grouping asks its caller to make, with the event it writes."""

    report: BugReport  # locked
    to_status: str
    kind: str
    message: str
    data: dict


@dataclass(frozen=True)
class Grouped:
    """What grouping did (`group`; `created`: the report is its canonical) and what the
    caller must do next (`follow_up`), if anything."""

    group: DedupGroup | None
    created: bool = False
    follow_up: StatusMove | None = None


# The common case of a submission, on PostgreSQL: the fingerprint's group is live (active,
# not merged into another, within the window) and its canonical open. One statement locks
# the group and its canonical (as active_slot() does), counts the occurrence and, through
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
   SET {tally_sql("g", {"occurrences": "1", "first_seen": "arg.at", "last_seen": "arg.at", "releases_seen": "arg.release"})}
  FROM slot, (SELECT %s::timestamptz AS at, %s::jsonb AS release) AS arg
 WHERE g.id = slot.id
RETURNING g.id, g.canonical_id, g.occurrences
"""
# The duplicate's event, from the rule's own text and keys, over the lead's row.
_LINKED_FROM_LEAD = {
    "canonical": "lead.canonical_id::text",
    "group": "lead.id::text",
    "fingerprint": "%s::text",
    "occurrences": "lead.occurrences",
}
_LINKED_MESSAGE = text_sql(rules.DUPLICATE_TEXT, **_LINKED_FROM_LEAD)
_LINKED_DATA = jsonb_object_sql({key: _LINKED_FROM_LEAD[key] for key in rules.DUPLICATE_DATA})


def _join_live_group(report: BugReport, fp: Fingerprint, *, actor: str, writes: Writes) -> bool:
    """Send `writes` (the report's INSERT and `created` event) with the occurrence counted
    on the live group of `fp`; False when there is none (nothing was written)."""
    since = rules.live_since(occurred=report.created_at, window=dedup_window(report))
    since = since if since is not None else datetime.min.replace(tzinfo=UTC)
    one = rules.Tally.one(at=report.created_at, release=report.release_sha)  # [] is in every list
    field = DedupGroup._meta.get_field("releases_seen")
    params = [fp.hex, since, one.last_seen, field.get_db_prep_save(one.releases_seen, connection)]
    from_lead = {"dedup_group_id": "lead.id", "duplicate_of_id": "lead.canonical_id"}
    writes.lead(_COUNT_LIVE_SQL, params, expressions={report: from_lead})
    report.fingerprint, report.fingerprint_version = fp.hex, fp.version
    fingerprint_params = [fp.hex] * _LINKED_MESSAGE.count("%s")
    writes.lead_event(
        report=report,
        kind=EventKind.DUPLICATE_LINKED,
        actor=actor,
        message_sql=(_LINKED_MESSAGE, fingerprint_params),
        data_sql=(_LINKED_DATA, [fp.hex] * _LINKED_DATA.count("%s")),
        created_at=report.created_at,
    )
    row = writes.execute()
    if row is None:
        return False
    report.dedup_group_id, report.duplicate_of_id = row[0], row[1]
    return True


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


# Stale occurrences: the facts rules.stale_reason decides on ---------------------------------


def canonical_done_at(canonical: BugReport) -> datetime:
    """rules.done_at for a resolved/closed canonical (its last move there read when needed)."""
    last_move = None
    if not canonical.resolved_at:
        last_move = (
            BugReportEvent.objects.filter(
                report=canonical,
                kind__in=[EventKind.STATUS_CHANGED, EventKind.RESOLVED],
                data__to__in=list(DONE_STATUSES),
            )
            .order_by("-created_at", "-id")
            .values_list("created_at", flat=True)
            .first()
        )
    return rules.done_at(
        resolved_at=canonical.resolved_at,
        last_done_move_at=last_move,
        updated_at=canonical.updated_at,
    )


def first_deployed_at(release: str) -> datetime | None:
    """The registry's first deploy of `release` (or of a SHA it is a long enough prefix of)."""
    match = Q(sha=release)
    if rules.registry_prefix_ok(release):
        match |= Q(sha__startswith=release)
    return Release.objects.filter(match).aggregate(first=Min("deployed_at"))["first"]


def stale_facts(
    *, group: DedupGroup, canonical: BugReport, release: str | None
) -> rules.StaleFacts:
    done = canonical_done_at(canonical)
    seen_at = deployed_at = None
    if release and not rules.sha_matches(release, canonical.resolved_in_release):
        if release in (group.releases_seen or []):
            seen_at = BugReport.objects.filter(dedup_group=group, release_sha=release).aggregate(
                first=Min("created_at")
            )["first"]
        deployed_at = first_deployed_at(release)
    return rules.StaleFacts(
        release=release,
        resolved_in_release=canonical.resolved_in_release,
        done_at=done,
        release_seen_at=seen_at,
        release_deployed_at=deployed_at,
    )


def _regression(canonical: BugReport, *, report: BugReport, done_at: datetime) -> StatusMove:
    before = canonical.status
    return StatusMove(
        report=canonical,
        to_status=Status.TRIAGED,
        kind=EventKind.REGRESSED,
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


def _follow_canonical(report: BugReport, canonical: BugReport, reason: str) -> StatusMove | None:
    """A stale occurrence of a fixed bug is only counted: it follows its canonical's status."""
    before = report.status
    if before in DONE_STATUSES or canonical.status not in ALLOWED_TRANSITIONS.get(before, ()):
        return None
    return StatusMove(
        report=report,
        to_status=canonical.status,
        kind=EventKind.RESOLVED
        if canonical.status == Status.RESOLVED
        else EventKind.STATUS_CHANGED,
        message=f"Stale occurrence ({reason}) of {canonical.status} report {canonical.pk}.",
        data={
            "from": before,
            "to": canonical.status,
            "canonical": str(canonical.pk),
            "stale": reason,
        },
    )


# Filing one report ------------------------------------------------------------------------


def _count_duplicate(
    group: DedupGroup, *, report: BugReport, actor: str, fp: Fingerprint, writes: Writes
) -> StatusMove | None:
    """Count `report` on its locked group, with its `duplicate_linked` event, in `writes`.

    Returns what follows once the writes are in, when the canonical is resolved or closed: a
    regression reopens it, a stale occurrence follows it.
    """
    follow_up, stale = None, None
    if group.canonical_status in DONE_STATUSES:
        # The rare case needs the whole canonical; it is already locked by the slot query.
        canonical = BugReport.objects.select_for_update().get(pk=group.canonical_id)
        # Decided before this occurrence's release joins releases_seen.
        facts = stale_facts(group=group, canonical=canonical, release=report.release_sha)
        stale = rules.stale_reason(facts)
        if stale is None:
            follow_up = _regression(canonical, report=report, done_at=facts.done_at)
        else:
            follow_up = _follow_canonical(report, canonical, stale)
    _link_event(report, group, fp=fp, actor=actor, writes=writes, stale=stale)
    return follow_up


def _link_event(report, group, *, fp, actor, writes, stale=None) -> None:
    count_on(group, report, writes)
    writes.event(
        report=report,
        kind=EventKind.DUPLICATE_LINKED,
        actor=actor,
        message=rules.duplicate_message(
            canonical=group.canonical_id, occurrences=group.occurrences
        ),
        data=rules.duplicate_data(
            canonical=group.canonical_id,
            group=group.pk,
            fingerprint=fp.hex,
            occurrences=group.occurrences,
            stale=stale,
        ),
        created_at=report.created_at,
    )


def _keep_client_parts(report: BugReport, fp: Fingerprint, parts: list[str] | None) -> None:
    if fp.inputs.get("kind") == "client":
        ClientFingerprint.objects.update_or_create(
            report_id=report.pk, defaults={"parts": list(parts or [])}
        )


def _prepare(report: BugReport, fp: Fingerprint) -> tuple[DedupGroup | None, bool]:
    """Settle `report`'s group (locked) and set its grouping columns, before or after its
    INSERT. (None, False) for a report that names its canonical already."""
    if report.duplicate_of_id is not None:
        return None, False
    group, created = find_or_create(report, fp)
    report.fingerprint, report.fingerprint_version = fp.hex, fp.version
    report.dedup_group_id = group.pk
    report.duplicate_of_id = None if created else group.canonical_id
    return group, created


def _finish(report: BugReport, fp: Fingerprint, group, created, *, actor, writes, parts) -> Grouped:
    """Send `writes` with the occurrence count and the `duplicate_linked` event."""
    follow_up = None
    if group is None:
        writes.execute()
        group = _link_given_duplicate(report, fp, actor=actor)
    else:
        if not created:
            follow_up = _count_duplicate(group, report=report, actor=actor, fp=fp, writes=writes)
        writes.execute()
    _keep_client_parts(report, fp, parts)
    return Grouped(group=group, created=created, follow_up=follow_up)


def group_submission(
    *, report: BugReport, actor: str, writes: Writes, client_fingerprint: list[str] | None = None
) -> Grouped:
    """File a report being submitted under its group, sending `writes` (its INSERT and
    `created` event) together with the grouping's own writes.

    On PostgreSQL, joining a live group is one statement (_join_live_group). Otherwise (no
    live group, or not PostgreSQL) the group is settled first and the writes go with the
    grouping's own. The caller makes the returned follow-up, if any.
    """
    fp = report_fingerprint(report, client_fingerprint)
    live = connection.vendor == "postgresql" and report.duplicate_of_id is None
    if live and _join_live_group(report, fp, actor=actor, writes=writes):
        _keep_client_parts(report, fp, client_fingerprint)
        return Grouped(group=None)
    # No live group (nothing was written), or not PostgreSQL: settle the group first.
    group, created = _prepare(report, fp)
    return _finish(report, fp, group, created, actor=actor, writes=writes, parts=client_fingerprint)


def report_group(
    *, report: BugReport, actor: str, client_fingerprint: list[str] | None = None
) -> DedupGroup:
    """Fingerprint an inserted report and file it under its group; never reopens anything
    (imports, regroup, merges): a stale reason still goes into its event.

    The report becomes canonical of a new group, or a duplicate of the live group's
    canonical (`occurrences` +1). `report.created_at` is the occurrence time. A report
    already grouped is left alone.
    """
    if report.dedup_group_id is not None:
        return report.dedup_group
    # No savepoint of its own: a failure here fails the submission it is part of.
    with transaction.atomic(savepoint=False):
        fp = report_fingerprint(report, client_fingerprint)
        group, created = _prepare(report, fp)
        if group is not None:
            _link_new(report, fp=fp, group_id=group.pk, canonical_id=report.duplicate_of_id)
        grouped = _finish(
            report, fp, group, created, actor=actor, writes=Writes(), parts=client_fingerprint
        )
        return grouped.group


def _link_given_duplicate(report: BugReport, fp: Fingerprint, *, actor: str) -> DedupGroup:
    """A report created already naming its canonical joins that canonical's group."""
    canonical = get_report(report.duplicate_of_id)
    if canonical.dedup_group_id is None and canonical.duplicate_of_id is None:
        report_group(report=canonical, actor=actor)
        canonical.refresh_from_db()
    if canonical.duplicate_of_id is not None:  # never a chain
        canonical = get_report(canonical.duplicate_of_id)
    group = lock_groups(canonical.dedup_group_id)[canonical.dedup_group_id]
    _link_new(report, fp=fp, group_id=group.pk, canonical_id=canonical.pk)
    writes = Writes()
    _link_event(report, group, fp=fp, actor=actor, writes=writes)
    writes.execute()
    return group


def ensure_grouped(report: BugReport, actor: str) -> BugReport:
    """Reports that predate grouping get their group before a merge or split touches them."""
    if report.dedup_group_id is None:
        report_group(report=report, actor=actor)
        report.refresh_from_db()
    return report
