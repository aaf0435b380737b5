"""The migration to one release per sha and environment keeps the row first recorded."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("telemetry", "0001_initial")]
AFTER = [("telemetry", "0002_one_release_per_environment")]


@pytest.mark.django_db(transaction=True)
def test_releases_recorded_twice_keep_the_first_row():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    Release = executor.loader.project_state(BEFORE).apps.get_model("telemetry", "Release")
    first = Release.objects.create(
        sha="abc1234", environment="prod", version="1", deployed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    Release.objects.create(
        sha="abc1234", environment="prod", version="2", deployed_at=datetime(2026, 2, 1, tzinfo=UTC)
    )
    staging = Release.objects.create(
        sha="abc1234", environment="staging", deployed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    Release = executor.loader.project_state(AFTER).apps.get_model("telemetry", "Release")
    kept = Release.objects.order_by("id")
    assert [(r.id, r.environment, r.version) for r in kept] == [
        (first.id, "prod", "1"),
        (staging.id, "staging", ""),
    ]
