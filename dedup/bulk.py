"""Grouping imported reports in bulk: the database `report_group` would leave, row for row.

`dedup.grouping.report_group` files one report at a time (a handful of queries each); a
backfill of 100,000 reports cannot afford that. This pass takes the imported reports not
grouped yet in `created_at` order, a chunk at a time, and decides with the same rules
(`dedup/rules.py`: window, lapse, stale reason, occurrence counting, the duplicate's event)
on facts it holds in memory for the chunk: the fingerprint (`groups.report_fingerprint`),
the live group of that fingerprint (or the group it was merged into), a new group with the
report as canonical otherwise. It never reopens anything. The writes are a few bulk
statements per chunk (`bugtracker/bulk.py`), one transaction per chunk.
`tests/dedup/test_bulk.py` holds it to `report_group` one by one.
"""

import bisect
import uuid
from collections.abc import Callable

from django.db import IntegrityError, connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from bugtracker.bulk import in_list, insert_rows, update_rows
from dedup import rules
from dedup.grouping import canonical_done_at, first_deployed_at
from dedup.groups import dedup_window, report_fingerprint
from dedup.models import DedupGroup
from reports.models import DONE_STATUSES, BugReport, BugReportEvent, EventKind
from telemetry.models import Release

CHUNK_SIZE = 2000
_REGISTRY_IN_MEMORY = 100_000
_ATTEMPTS = 5

GROUP_ATTNAMES = (
    "id",
    "fingerprint",
    "algorithm_version",
    "canonical_id",
    "occurrences",
    "first_seen",
    "last_seen",
    "inputs",
    "releases_seen",
    "active",
    "merged_into_id",
    "split_from_id",
    "created_at",
)
EVENT_ATTNAMES = ("report_id", "kind", "actor", "message", "data", "created_at")
# What fingerprints, windows and the stale rules read (a canonical's status and resolution too).
REPORT_FIELDS = (
    "id",
    "title",
    "stack_trace",
    "component",
    "route",
    "created_at",
    "updated_at",
    "release_sha",
    "version",
    "legacy_id",
    "status",
    "resolved_at",
    "resolved_in_release",
)


class _Conflict(Exception):
    """Someone else grouped or changed a report of the chunk meanwhile: do the chunk again."""


def legacy_reports_group_bulk(
    *, actor: str, on_progress: Callable | None = None, chunk_size: int = CHUNK_SIZE
) -> int:
    run = _Pass(actor)
    pending = BugReport.objects.filter(legacy_id__isnull=False, fingerprint__isnull=True)
    done = 0
    after: tuple | None = None
    while True:
        rows = pending.order_by("created_at", "id")
        if after is not None:
            rows = rows.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
        keys = list(rows.values_list("created_at", "id")[:chunk_size])
        if not keys:
            return done
        for attempt in range(_ATTEMPTS):
            try:
                with transaction.atomic():
                    done += run.chunk([pk for _, pk in keys])
                break
            except (IntegrityError, _Conflict):
                run.forget()
                if attempt == _ATTEMPTS - 1:
                    raise
        if on_progress is not None:
            on_progress(len(keys))
        after = keys[-1]


class _Pass:
    def __init__(self, actor: str):
        self.actor = actor
        self.done_at: dict = {}
        self.registry: _Registry | None = None

    def forget(self) -> None:
        self.done_at = {}

    def chunk(self, ids: list) -> int:
        rows = (
            BugReport.objects.filter(pk__in=in_list(ids, uuids=True), fingerprint__isnull=True)
            .order_by("created_at", "id")
            .values_list(*REPORT_FIELDS)
        )
        # Plain records, not model instances: fingerprints and the rules only read attributes.
        reports = [_Row(zip(REPORT_FIELDS, row, strict=True)) for row in rows]
        if not reports:
            return 0
        fingerprints = {r.pk: report_fingerprint(r) for r in reports}
        slots = self._slots({fp.hex for fp in fingerprints.values()})
        members = self._member_first_seen(slots, reports)
        self.done_at.update(
            self._done_at_of(
                [g.canonical for g, _ in slots.values() if g.canonical.pk not in self.done_at]
            )
        )
        # Any report of the chunk may become a canonical: their times too, for this chunk only.
        chunk_done_at = self._done_at_of(reports)
        now = timezone.now()
        new_groups: dict = {}
        touched: dict = {}
        retired: list = []
        links, events = [], []
        for report in reports:
            fp = fingerprints[report.pk]
            group, slot_id = slots.get(fp.hex, (None, None))
            window = dedup_window(report)
            if group is not None and rules.lapsed(
                last_seen=group.last_seen, occurred=report.created_at, window=window
            ):
                retired.append(slot_id)
                group = None
            if group is None:
                group = _NewGroup(report, fp, now)
                slots[fp.hex] = (group, group.pk)
                if report.pk in chunk_done_at:
                    self.done_at[report.pk] = chunk_done_at[report.pk]
                new_groups[group.pk] = group
                links.append((fp.hex, fp.version, group.pk, None, report.pk, report.version))
                members[(group.pk, report.release_sha)] = report.created_at
                continue
            canonical = group.canonical
            links.append((fp.hex, fp.version, group.pk, canonical.pk, report.pk, report.version))
            key = (group.pk, report.release_sha)
            if key not in members or report.created_at < members[key]:
                members[key] = report.created_at
            stale = None
            if canonical.status in DONE_STATUSES:
                stale = self._stale_reason(group, canonical, report.release_sha, members)
            rules.count_occurrence(group, at=report.created_at, release=report.release_sha)
            if group.pk not in new_groups:
                touched[group.pk] = group
            events.append(
                (
                    report.pk,
                    EventKind.DUPLICATE_LINKED,
                    self.actor,
                    rules.duplicate_message(canonical=canonical.pk, occurrences=group.occurrences),
                    rules.duplicate_data(
                        canonical=canonical.pk,
                        group=group.pk,
                        fingerprint=fp.hex,
                        occurrences=group.occurrences,
                        stale=stale,
                    ),
                    report.created_at,
                )
            )
        self._write(new_groups, touched, retired, links, events)
        return len(reports)

    def _slots(self, hexes: set[str]) -> dict:
        """fingerprint → (the group its occurrences go to, the active group holding it)."""
        locked = DedupGroup.objects.select_related("canonical").filter(
            fingerprint__in=in_list(hexes), active=True
        )
        if connection.features.has_select_for_update_of:
            locked = locked.select_for_update(of=("self", "canonical"))
        slots = list(locked)
        # One object per group: a group can be a slot and the target of another slot at once.
        targets = {s.pk: s for s in slots}
        forward_ids = {s.merged_into_id for s in slots if s.merged_into_id} - set(targets)
        if forward_ids:
            forwarded = DedupGroup.objects.select_related("canonical").filter(
                pk__in=in_list(forward_ids, uuids=True)
            )
            if connection.features.has_select_for_update_of:
                forwarded = forwarded.select_for_update(of=("self", "canonical"))
            targets.update((g.pk, g) for g in forwarded)
        return {
            slot.fingerprint: (
                targets[slot.merged_into_id] if slot.merged_into_id else slot,
                slot.pk,
            )
            for slot in slots
        }

    @staticmethod
    def _done_at_of(reports: list) -> dict:
        """When each resolved or closed report became so (rules.done_at)."""
        done = [r for r in reports if r.status in DONE_STATUSES]
        moved = {}
        unresolved = [r.pk for r in done if not r.resolved_at]
        if unresolved:
            events = (
                BugReportEvent.objects.filter(
                    report_id__in=in_list(unresolved, uuids=True),
                    kind__in=[EventKind.STATUS_CHANGED, EventKind.RESOLVED],
                )
                .order_by("report_id", "created_at", "id")
                .values_list("report_id", "created_at", "data")
            )
            for report_id, created_at, data in events:
                if isinstance(data, dict) and data.get("to") in DONE_STATUSES:
                    moved[report_id] = created_at  # in time order: the last one wins
        return {
            r.pk: rules.done_at(
                resolved_at=r.resolved_at,
                last_done_move_at=moved.get(r.pk),
                updated_at=r.updated_at,
            )
            for r in done
        }

    def _member_first_seen(self, slots: dict, reports: list) -> dict:
        """(group, release) → the first member with that release, for the stale rules."""
        releases = {r.release_sha for r in reports if r.release_sha}
        if not releases or not slots:
            return {}
        rows = (
            BugReport.objects.filter(
                dedup_group_id__in=in_list((g.pk for g, _ in slots.values()), uuids=True),
                release_sha__in=in_list(releases),
            )
            .order_by()
            .values("dedup_group_id", "release_sha")
            .annotate(first=Min("created_at"))
        )
        return {(row["dedup_group_id"], row["release_sha"]): row["first"] for row in rows}

    def _stale_reason(self, group, canonical, release: str | None, members: dict) -> str | None:
        """rules.stale_reason, with its facts from what this pass holds in memory."""
        if canonical.pk not in self.done_at:
            instance = canonical
            if not isinstance(canonical, BugReport):
                instance = BugReport(
                    id=canonical.pk,
                    resolved_at=canonical.resolved_at,
                    updated_at=canonical.updated_at,
                )
            self.done_at[canonical.pk] = canonical_done_at(instance)
        seen_at = deployed_at = None
        if release:
            if release in (group.releases_seen or []):
                seen_at = members.get((group.pk, release))
            if self.registry is None:
                self.registry = _Registry()
            deployed_at = self.registry.first_deployed(release)
        facts = rules.StaleFacts(
            release=release,
            resolved_in_release=canonical.resolved_in_release,
            done_at=self.done_at[canonical.pk],
            release_seen_at=seen_at,
            release_deployed_at=deployed_at,
        )
        return rules.stale_reason(facts)

    def _write(self, new_groups, touched, retired, links, events) -> None:
        if retired:
            DedupGroup.objects.filter(pk__in=retired).update(active=False)
        insert_rows(DedupGroup, GROUP_ATTNAMES, [g.row() for g in new_groups.values()])
        changed = update_rows(
            BugReport,
            ("fingerprint", "fingerprint_version", "dedup_group_id", "duplicate_of_id"),
            ("id", "version"),
            links,
        )
        if changed != len(links):
            raise _Conflict
        update_rows(
            DedupGroup,
            ("occurrences", "first_seen", "last_seen", "releases_seen"),
            ("id",),
            [
                (g.occurrences, g.first_seen, g.last_seen, g.releases_seen, g.pk)
                for g in touched.values()
            ],
        )
        insert_rows(BugReportEvent, EVENT_ATTNAMES, events)


class _Row:
    """One report as the pass reads it."""

    def __init__(self, items):
        self.__dict__.update(items)
        self.pk = self.id


class _NewGroup:
    """A group this chunk creates, with its report as canonical (inserted at the end)."""

    def __init__(self, report, fp, now):
        self.pk = uuid.uuid4()
        self.fingerprint = fp.hex
        self.algorithm_version = fp.version
        self.inputs = fp.inputs
        self.canonical = report
        self.occurrences = 1
        self.first_seen = self.last_seen = report.created_at
        self.releases_seen = [report.release_sha] if report.release_sha else []
        self.created_at = now

    def row(self) -> tuple:
        return (
            self.pk,
            self.fingerprint,
            self.algorithm_version,
            self.canonical.pk,
            self.occurrences,
            self.first_seen,
            self.last_seen,
            self.inputs,
            self.releases_seen,
            True,
            None,
            None,
            self.created_at,
        )


class _Registry:
    """The release registry, for "deployed before the resolution": in memory when it is small.

    Matches like `dedup.grouping.first_deployed_at`: the same SHA, or (when
    rules.registry_prefix_ok) a registered SHA that starts with it; SQLite's LIKE ignores
    ASCII case, so here too.
    """

    def __init__(self):
        self.fold = connection.vendor == "sqlite"
        self.cache: dict = {}
        self.first_deploy: dict[str, object] | None = None
        if Release.objects.count() <= _REGISTRY_IN_MEMORY:
            first: dict = {}
            for sha, deployed_at in Release.objects.values_list("sha", "deployed_at").iterator():
                if sha not in first or deployed_at < first[sha]:
                    first[sha] = deployed_at
            self.first_deploy = first
            self.folded = sorted((sha.lower() if self.fold else sha, sha) for sha in first)

    def first_deployed(self, release: str):
        """The first deploy of `release` (or of a SHA it is a prefix of), or None."""
        if release not in self.cache:
            if self.first_deploy is None:
                self.cache[release] = first_deployed_at(release)
            else:
                self.cache[release] = self._in_memory(release)
        return self.cache[release]

    def _in_memory(self, release: str):
        first = self.first_deploy
        times = [first[release]] if release in first else []
        if rules.registry_prefix_ok(release):
            needle = release.lower() if self.fold else release
            i = bisect.bisect_left(self.folded, (needle, ""))
            while i < len(self.folded) and self.folded[i][0].startswith(needle):
                times.append(first[self.folded[i][1]])
                i += 1
        return min(times, default=None)
