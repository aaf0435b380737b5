"""Reads: releases, the release live in an environment at a time, reports on one trace."""

from datetime import datetime

from django.db.models import OuterRef, QuerySet, Subquery
from rest_framework.exceptions import ValidationError

from reports.selectors import report_list

from .filters import ReleaseFilter
from .models import Release

# A trace lookup answers at once; longer traces page through GET /api/bug-reports?trace_id=.
TRACE_REPORTS_LIMIT = 1000


def release_list(*, filters: dict | None = None) -> QuerySet[Release]:
    """Recorded deployments, narrowed by ReleaseFilter's query parameters when given."""
    queryset = Release.objects.all()
    if filters is None:
        return queryset
    filterset = ReleaseFilter(filters, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return filterset.qs


def releases_live_at(*, environment, at) -> QuerySet[Release]:
    """Deployments to `environment` up to `at`, latest first (the first is the one live at `at`).

    `environment` and `at` may be OuterRef expressions, for use as a subquery.
    """
    return Release.objects.filter(environment=environment, deployed_at__lte=at).order_by(
        "-deployed_at", "-id"
    )


def release_at(*, environment: str | None, at: datetime) -> Release | None:
    """The release deployed to `environment` at `at`: the latest deployment not after it."""
    if not environment:
        return None
    return releases_live_at(environment=environment, at=at).first()


def live_release_id_subquery() -> Subquery:
    """For BugReport rows: the id of the release live in their environment at their created_at."""
    live = releases_live_at(environment=OuterRef("environment"), at=OuterRef("created_at"))
    return Subquery(live.values("id")[:1])


def reports_on_trace(*, trace_id: str):
    """Every report on one trace, duplicates included, oldest first."""
    return (
        report_list()
        .filter(trace_id=trace_id)
        .select_related("dedup_group")
        .order_by("created_at", "id")[:TRACE_REPORTS_LIMIT]
    )


def release_and_previous(
    *, sha: str | None, environment: str | None
) -> tuple[Release | None, Release | None]:
    """The deployment of `sha` to `environment` (there is one at most: the registry keeps
    the first), and the deployment of another sha there just before it:
    `previous.sha..release.sha` is the range of commits that may have brought a bug in."""
    if not sha or not environment:
        return None, None
    release = Release.objects.filter(sha=sha, environment=environment).first()
    if release is None:
        return None, None
    previous = (
        releases_live_at(environment=environment, at=release.deployed_at).exclude(sha=sha).first()
    )
    return release, previous
