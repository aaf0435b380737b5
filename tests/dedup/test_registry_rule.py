"""The registry rule in SQL (`first_deployed_at`) and in Python (`rules.deployed_as`) agree."""

from datetime import UTC, datetime, timedelta

import pytest

from dedup import rules
from dedup.grouping import first_deployed_at
from telemetry.models import Release

from .test_rules import REGISTRY_CASES

T0 = datetime(2026, 1, 1, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def test_first_deployed_at_applies_the_pure_rule_on_a_table_of_cases():
    registered = sorted({sha for _, sha, _ in REGISTRY_CASES})
    for n, sha in enumerate(registered):
        Release.objects.create(sha=sha, environment="production", deployed_at=T0 + timedelta(n))
    first = {sha: T0 + timedelta(n) for n, sha in enumerate(registered)}
    releases = sorted({release for release, _, _ in REGISTRY_CASES})
    checked = 0
    for release in releases:
        expected = min(
            (first[sha] for sha in registered if rules.deployed_as(release, sha)), default=None
        )
        assert first_deployed_at(release) == expected, release
        checked += expected is not None
    # Not a table where nothing matches: most releases find a deploy.
    assert checked >= len(releases) // 2
