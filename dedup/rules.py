"""The grouping rules, as pure functions of plain values: no database, no settings.

Every path that groups reports calls these: live submission and regroup
(`dedup/grouping.py`), merge and split, the backfill's bulk pass, and the SQL statements
(which render `TALLY_RULE` and `DUPLICATE_TEXT` rather than restate them).
`tests/dedup/test_rules.py` tests them without a database.
"""

from dataclasses import dataclass, field
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


@dataclass
class Tally:
    """What a group counts: how often, first and last seen, the releases seen (in order)."""

    occurrences: int
    first_seen: datetime
    last_seen: datetime
    releases_seen: list[str] = field(default_factory=list)

    @classmethod
    def one(cls, *, at: datetime, release: str | None) -> "Tally":
        """The tally of a single occurrence (what a new group starts with)."""
        return cls(1, at, at, [release] if release else [])


def add_tally(
    target, *, occurrences: int, first_seen: datetime, last_seen: datetime, releases_seen
) -> None:
    """The one occurrence-counting rule: `target` (a group, or a Tally) takes in another
    tally, in place. Counts add up, the first and last seen widen, releases are kept once each
    in the order first seen. `releases_seen` is replaced, never appended to (it may be shared).

    SQL statements render the same rule from TALLY_RULE (`dedup.groups.tally_sql`);
    tests/dedup/test_rules.py holds the two to each other.
    """
    target.occurrences += occurrences
    if first_seen < target.first_seen:
        target.first_seen = first_seen
    if last_seen > target.last_seen:
        target.last_seen = last_seen
    for release in releases_seen:
        if release not in target.releases_seen:
            target.releases_seen = [*target.releases_seen, release]


# add_tally, column by column, for the SQL that renders it: sum, earliest, latest, union.
TALLY_RULE = (
    ("occurrences", "sum"),
    ("first_seen", "earliest"),
    ("last_seen", "latest"),
    ("releases_seen", "union"),
)


def count_occurrence(group, *, at: datetime, release: str | None) -> None:
    """Count one occurrence on `group` (in memory)."""
    add_tally(
        group,
        occurrences=1,
        first_seen=at,
        last_seen=at,
        releases_seen=(release,) if release else (),
    )


def count_group(target, source, *, members: int) -> None:
    """Count a whole group (`source`, `members` reports moved with it) on `target`. It counts
    at least once per report moved (a group created before counting was exact may say fewer)."""
    add_tally(
        target,
        occurrences=max(source.occurrences, members),
        first_seen=source.first_seen,
        last_seen=source.last_seen,
        releases_seen=source.releases_seen,
    )


def uncount(occurrences: int) -> int:
    """A group's count once a report has left it; a group never counts fewer than one."""
    return max(occurrences - 1, 1)


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
