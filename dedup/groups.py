"""Group rows: find the live group of a fingerprint, lock, create, retire, count on them.

The primitives that grouping (`grouping.py`), merge and split (`curation.py`), regroup and
the backfill's bulk pass share. Counting follows `rules.add_tally`, in Python, and `rules.TALLY_RULE` in SQL
(`tally_sql`).

Lock order, everywhere: the group holding a fingerprint, then the group it forwards to,
then reports. Merges lock source groups before the target group.
"""

from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from bugtracker.domain import DomainError, NotFound
from bugtracker.rows import from_row, select_list
from reports.models import BugReport
from reports.writes import Writes

from . import rules
from .fingerprint import Fingerprint, fingerprint_for
from .models import ClientFingerprint, DedupGroup

# How often a submission retries after losing the race to create a fingerprint's group.
CREATE_ATTEMPTS = 5


class GroupingConflict(DomainError):
    title = "Grouping conflict"
    type_slug = "grouping-conflict"


def dedup_window(report) -> timedelta | None:
    """rules.window for `report`: imported legacy reports are grouped across their history."""
    return rules.window(imported=bool(report.legacy_id), days=settings.DEDUP_WINDOW_DAYS)


def report_fingerprint(report, client_fingerprint: list[str] | None = None) -> Fingerprint:
    return fingerprint_for(
        title=report.title,
        stack_trace=report.stack_trace,
        component=report.component,
        route=report.route,
        client_fingerprint=client_fingerprint,
    )


def get_report(report_id) -> BugReport:
    """The report (unlocked), or NotFound."""
    try:
        return BugReport.objects.get(pk=report_id)
    except (BugReport.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Bug report {report_id} does not exist.") from None


def lock_groups(*ids) -> dict:
    """The groups of `ids`, locked in primary-key order, by id."""
    wanted = sorted({i for i in ids if i is not None})
    groups = DedupGroup.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    return {g.pk: g for g in groups}


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


def _group_with_canonical_status(where: str, param) -> DedupGroup | None:
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


def active_slot(fingerprint: str) -> DedupGroup | None:
    """The active group holding `fingerprint`, locked, with its canonical report locked too."""
    return _group_with_canonical_status("g.fingerprint = %s AND g.active", fingerprint)


def slot_target(slot: DedupGroup) -> DedupGroup:
    """The group a slot's occurrences go to: itself, or the group it was merged into."""
    if slot.merged_into_id is None:
        return slot
    pk = DedupGroup._meta.pk.get_db_prep_value(slot.merged_into_id, connection)
    return _group_with_canonical_status("g.id = %s", pk)


def group_lapsed(group: DedupGroup, occurred: datetime, window: timedelta | None) -> bool:
    return rules.lapsed(last_seen=group.last_seen, occurred=occurred, window=window)


def retire(group: DedupGroup) -> None:
    DedupGroup.objects.filter(pk=group.pk).update(active=False)
    group.active = False


def new_group(report: BugReport, fp: Fingerprint, **extra) -> DedupGroup | None:
    """Create the active group of `fp` with `report` as canonical; None if another won the race."""
    first = rules.Tally.one(at=report.created_at, release=report.release_sha)
    try:
        with transaction.atomic():
            return DedupGroup.objects.create(
                fingerprint=fp.hex,
                algorithm_version=fp.version,
                # The report may not be inserted yet (grouping prepared before the INSERT):
                # foreign keys are checked at commit.
                canonical_id=report.pk,
                occurrences=first.occurrences,
                first_seen=first.first_seen,
                last_seen=first.last_seen,
                inputs=fp.inputs,
                releases_seen=first.releases_seen,
                **extra,
            )
    except IntegrityError:
        return None


def find_or_create(report: BugReport, fp: Fingerprint) -> tuple[DedupGroup, bool]:
    """The live group for `fp` (locked, canonical locked), or a new one with `report` canonical.

    The partial unique index `dedup_one_active_group` decides races: the loser's insert
    fails inside its savepoint, and it joins the winner's group on the next round.
    """
    window = dedup_window(report)
    for _attempt in range(CREATE_ATTEMPTS):
        slot = active_slot(fp.hex)
        if slot is not None:
            group = slot_target(slot)
            if not group_lapsed(group, report.created_at, window):
                return group, False
            retire(slot)
        group = new_group(report, fp)
        if group is not None:
            return group, True
    raise GroupingConflict("Could not settle the dedup group for this fingerprint; retry.")


def count_on(group: DedupGroup, report: BugReport, writes: Writes) -> None:
    """One more occurrence (rules.count_occurrence) on a locked group, sent with `writes`."""
    rules.count_occurrence(group, at=report.created_at, release=report.release_sha)
    names = [name for name, _ in rules.TALLY_RULE]
    fields = [DedupGroup._meta.get_field(name) for name in (*names, "id")]
    sets = ", ".join(f"{f.column} = %s" for f in fields[:-1])
    writes.add(
        f"UPDATE {DedupGroup._meta.db_table} SET {sets} WHERE id = %s",
        [f.get_db_prep_save(getattr(group, f.attname), connection) for f in fields],
    )


# How each way of combining (rules.TALLY_RULE) reads in SQL, for one occurrence `b`.
_TALLY_SQL = {
    "sum": "{a} + {b}",
    "earliest": "LEAST({a}, {b})",
    "latest": "GREATEST({a}, {b})",
    "union": "CASE WHEN {a} @> {b} THEN {a} ELSE {a} || {b} END",
}


def tally_sql(alias: str, one: dict[str, str]) -> str:
    """The SET list that counts one occurrence (`one`: SQL per tally column) by the rule."""
    return ", ".join(
        f"{name} = " + _TALLY_SQL[how].format(a=f"{alias}.{name}", b=one[name])
        for name, how in rules.TALLY_RULE
    )


def client_parts(report_id) -> list[str] | None:
    """The fingerprint parts a client sent with the report, if it sent any."""
    return (
        ClientFingerprint.objects.filter(report_id=report_id)
        .values_list("parts", flat=True)
        .first()
    )


# Counting by hand (merge, split, regroup) -------------------------------------------------

TALLY_FIELDS = [name for name, _ in rules.TALLY_RULE]


def take_in_group(target: DedupGroup, source: DedupGroup, *, members: int) -> None:
    """Count a whole group (`members` reports moved with it) on `target`, and save it."""
    rules.count_group(target, source, members=members)
    target.save(update_fields=TALLY_FIELDS)


def take_off(group: DedupGroup) -> None:
    """One report left `group`: one occurrence less (rules.uncount), saved."""
    group.occurrences = rules.uncount(group.occurrences)
    group.save(update_fields=["occurrences"])


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
