"""The grouping rules on plain values, without a database."""

from datetime import UTC, datetime, timedelta

import pytest

from dedup import rules

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_window_is_days_for_live_reports_and_none_for_imports():
    assert rules.window(imported=False, days=30) == 30 * DAY
    assert rules.window(imported=True, days=30) is None


@pytest.mark.parametrize(
    ("last_seen", "occurred", "window", "lapsed"),
    [
        (T0, T0 + 30 * DAY, 30 * DAY, False),  # exactly the window: still live
        (T0, T0 + 30 * DAY + timedelta(microseconds=1), 30 * DAY, True),
        (T0, T0 + 10_000 * DAY, None, False),  # imports never lapse
        (T0 + DAY, T0, 30 * DAY, False),  # an older occurrence (imports arrive in any order)
    ],
)
def test_lapsed(last_seen, occurred, window, lapsed):
    assert rules.lapsed(last_seen=last_seen, occurred=occurred, window=window) is lapsed
    since = rules.live_since(occurred=occurred, window=window)
    assert (since is not None and last_seen < since) is lapsed


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("abc1234", "ABC1234def", True),  # a short SHA matches its full form, any case
        ("abc1234def", "abc1234", True),
        ("abc123", "abc123def", False),  # under seven characters: no prefix match
        ("abc123", "abc123", True),
        (None, "abc1234", False),
        ("", "", False),
        ("abc1234", "abd1234", False),
    ],
)
def test_sha_matches(a, b, same):
    assert rules.sha_matches(a, b) is same


def test_done_at_prefers_resolved_at_then_the_last_move_then_updated_at():
    assert rules.done_at(resolved_at=T0, last_done_move_at=T0 + DAY, updated_at=T0 + 2 * DAY) == T0
    assert rules.done_at(resolved_at=None, last_done_move_at=T0 + DAY, updated_at=T0) == T0 + DAY
    assert rules.done_at(resolved_at=None, last_done_move_at=None, updated_at=T0) == T0


def facts(**overrides) -> rules.StaleFacts:
    values = {
        "release": "r2",
        "resolved_in_release": "r1",
        "done_at": T0,
        "release_seen_at": None,
        "release_deployed_at": None,
    }
    return rules.StaleFacts(**{**values, **overrides})


def test_stale_reasons_in_order():
    assert rules.stale_reason(facts()) is None  # a new release: a regression
    assert rules.stale_reason(facts(release=None)) is None  # no release: cannot be shown stale
    assert rules.stale_reason(facts(release="r1")) == "resolved_in_release"
    assert rules.stale_reason(facts(release_seen_at=T0 - DAY)) == "seen_before_resolution"
    assert rules.stale_reason(facts(release_seen_at=T0 + DAY)) is None
    assert rules.stale_reason(facts(release_deployed_at=T0 - DAY)) == "deployed_before_resolution"
    assert rules.stale_reason(facts(release_deployed_at=T0)) is None  # not before
    both = facts(release="r1", release_seen_at=T0 - DAY, release_deployed_at=T0 - DAY)
    assert rules.stale_reason(both) == "resolved_in_release"


class Group:
    def __init__(self, occurrences, first_seen, last_seen, releases_seen):
        self.occurrences, self.first_seen = occurrences, first_seen
        self.last_seen, self.releases_seen = last_seen, releases_seen


def test_counting_an_occurrence():
    group = Group(2, T0, T0 + DAY, ["r1"])
    rules.count_occurrence(group, at=T0 - DAY, release="r2")
    assert (group.occurrences, group.first_seen, group.last_seen) == (3, T0 - DAY, T0 + DAY)
    assert group.releases_seen == ["r1", "r2"]
    rules.count_occurrence(group, at=T0 + 5 * DAY, release="r1")
    rules.count_occurrence(group, at=T0 + 6 * DAY, release=None)
    assert (group.occurrences, group.last_seen) == (5, T0 + 6 * DAY)
    assert group.releases_seen == ["r1", "r2"]  # seen once, in first-seen order


def test_a_merge_counts_at_least_once_per_moved_report():
    target = rules.Tally(3, T0, T0 + DAY, ["r1"])
    source = rules.Tally(1, T0 - DAY, T0, ["r2", "r1"])
    rules.count_group(target, source, members=4)
    assert target == rules.Tally(7, T0 - DAY, T0 + DAY, ["r1", "r2"])
    assert rules.uncount(5) == 4
    assert rules.uncount(1) == 1  # a group never counts fewer than one


# What each combine named in TALLY_RULE means (the SQL renders these names).
COMBINES = {
    "sum": lambda a, b: a + b,
    "earliest": min,
    "latest": max,
    "union": lambda a, b: [*a, *[r for r in dict.fromkeys(b) if r not in a]],
}


@pytest.mark.parametrize(
    "more",
    [
        rules.Tally(1, T0 + DAY, T0 + DAY, ["r3"]),
        rules.Tally(1, T0 - DAY, T0 - DAY, []),
        rules.Tally(5, T0 - 9 * DAY, T0 + 9 * DAY, ["r2", "r1", "r4", "r2"]),
    ],
)
def test_add_tally_is_what_tally_rule_describes(more):
    total = rules.Tally(2, T0, T0 + 2 * DAY, ["r1", "r2"])
    described = {
        name: COMBINES[how](getattr(total, name), getattr(more, name))
        for name, how in rules.TALLY_RULE
    }
    rules.add_tally(total, **vars(more))
    assert vars(total) == described


def test_the_duplicate_event_text_and_data():
    assert rules.duplicate_message(canonical="c", occurrences=3) == "Duplicate of c (occurrence 3)."
    data = rules.duplicate_data(canonical="c", group="g", fingerprint="f", occurrences=3)
    assert data == {"canonical": "c", "group": "g", "fingerprint": "f", "occurrences": 3}
    assert rules.duplicate_data(
        canonical="c", group="g", fingerprint="f", occurrences=3, stale="seen_before_resolution"
    )["stale"] == ("seen_before_resolution")
    assert set(rules.DUPLICATE_DATA) == set(data)
