"""The grouping rules, as pure functions of plain values: no database, no settings.

Every path that groups reports calls these: live submission and regroup
(`dedup/grouping.py`), merge and split, the backfill's bulk pass, and the SQL statements
(which render `TALLY_RULE` and `DUPLICATE_TEXT` rather than restate them).
`tests/dedup/test_rules.py` tests them without a database.
"""

import operator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

# Release ids shorter than this are never matched by prefix.
MIN_SHA_PREFIX = 7

# Window ---------------------------------------------------------------------------------


def window(*, imported: bool, days: int) -> timedelta | None:
    """How long a group keeps catching occurrences after its last one.

    Imported legacy reports are grouped across their whole history (None: no window): the
    old files are one bug's record, and gaps in them must not split it into several
    canonicals.
    """
    return None if imported else timedelta(days=days)


def live_since(*, occurred: datetime, window: timedelta | None) -> datetime | None:
    """The oldest `last_seen` a group may have and still catch an occurrence at `occurred`
    (None: any)."""
    return None if window is None else occurred - window


def lapsed(*, last_seen: datetime, occurred: datetime, window: timedelta | None) -> bool:
    """A group whose last occurrence is more than `window` older than this one is retired."""
    since = live_since(occurred=occurred, window=window)
    return since is not None and last_seen < since


# Releases and stale occurrences -----------------------------------------------------------


def sha_matches(a: str | None, b: str | None) -> bool:
    """The same release: equal, or a short SHA (MIN_SHA_PREFIX or more) and its full form."""
    if not a or not b:
        return False
    if a == b:
        return True
    shorter, longer = sorted((a.lower(), b.lower()), key=len)
    return len(shorter) >= MIN_SHA_PREFIX and longer.startswith(shorter)


def registry_prefix_ok(release: str) -> bool:
    """Whether a registered SHA that starts with `release` names the same release."""
    return len(release) >= MIN_SHA_PREFIX


def done_at(
    *, resolved_at: datetime | None, last_done_move_at: datetime | None, updated_at: datetime
) -> datetime:
    """When a canonical became resolved or closed: `resolved_at`, else its last move into
    resolved/closed (closing without resolving sets no resolved_at), else `updated_at`."""
    return resolved_at or last_done_move_at or updated_at


@dataclass(frozen=True)
class StaleFacts:
    """What decides whether an occurrence of a resolved/closed canonical is stale."""

    release: str | None  # the occurrence's release
    resolved_in_release: str | None  # named at the canonical's resolution
    done_at: datetime  # when the canonical became resolved/closed (`done_at()`)
    release_seen_at: datetime | None  # the group's first occurrence in `release`, if any
    release_deployed_at: datetime | None  # the registry's first deploy of `release`, if any


def stale_reason(facts: StaleFacts) -> str | None:
    """Why an occurrence of a resolved/closed canonical must not reopen it, or None.

    Stale: from the release named at resolution, from a release the group had already seen
    before the resolution, or from one the registry shows deployed before it. An occurrence
    without a release cannot be shown to be stale: it is a regression.
    """
    if not facts.release:
        return None
    if sha_matches(facts.release, facts.resolved_in_release):
        return "resolved_in_release"
    if facts.release_seen_at is not None and facts.release_seen_at < facts.done_at:
        return "seen_before_resolution"
    if facts.release_deployed_at is not None and facts.release_deployed_at < facts.done_at:
        return "deployed_before_resolution"
    return None


# Counting occurrences ---------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What a group counts: how often, first and last seen, the releases seen (in order)."""

    occurrences: int
    first_seen: datetime
    last_seen: datetime
    releases_seen: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, group) -> "Tally":
        """The tally of a group (or anything with its four attributes)."""
        return cls(*(getattr(group, name) for name, _ in TALLY_RULE))

    @classmethod
    def one(cls, *, at: datetime, release: str | None) -> "Tally":
        """A single occurrence."""
        return cls(1, at, at, [release] if release else [])

    def put_on(self, group) -> None:
        """Set the four attributes on `group`."""
        for name, _ in TALLY_RULE:
            setattr(group, name, getattr(self, name))


def _union(seen: list[str], more: list[str]) -> list[str]:
    if all(release in seen for release in more):
        return seen
    return [*seen, *[release for release in more if release not in seen]]


# The one occurrence-counting rule: how a tally takes in another, column by column. SQL
# statements render it (dedup/grouping.py `tally_sql`) instead of restating it.
TALLY_RULE = (
    ("occurrences", "sum"),
    ("first_seen", "earliest"),
    ("last_seen", "latest"),
    ("releases_seen", "union"),
)
_COMBINE = {"sum": operator.add, "earliest": min, "latest": max, "union": _union}


def tally_add(total: Tally, more: Tally) -> Tally:
    """`total` with `more` counted in: one occurrence, or a whole group merged in."""
    return replace(
        total,
        **{
            name: _COMBINE[how](getattr(total, name), getattr(more, name))
            for name, how in TALLY_RULE
        },
    )


def count_occurrence(group, *, at: datetime, release: str | None) -> None:
    """Count one occurrence on `group` (in memory): the rule above, for the usual case."""
    tally_add(Tally.of(group), Tally.one(at=at, release=release)).put_on(group)


# The duplicate's event --------------------------------------------------------------------

DUPLICATE_TEXT = "Duplicate of {canonical} (occurrence {occurrences})."
DUPLICATE_DATA = ("canonical", "group", "fingerprint", "occurrences")


def duplicate_message(*, canonical, occurrences) -> str:
    return DUPLICATE_TEXT.format(canonical=canonical, occurrences=occurrences)


def duplicate_data(*, canonical, group, fingerprint: str, occurrences: int, stale=None) -> dict:
    """The `duplicate_linked` event's data; `stale` says why it did not reopen a fixed bug."""
    data = {
        "canonical": str(canonical),
        "group": str(group),
        "fingerprint": fingerprint,
        "occurrences": occurrences,
    }
    if stale:
        data["stale"] = stale
    return data


def merged_tally(target: Tally, source: Tally, *, members: int) -> Tally:
    """`target` with a whole group counted in. It counts at least once per report moved
    (a group created before counting was exact may say fewer)."""
    return tally_add(target, replace(source, occurrences=max(source.occurrences, members)))


def uncount(occurrences: int) -> int:
    """A group's count once a report has left it; a group never counts fewer than one."""
    return max(occurrences - 1, 1)
