from django.db import connection
from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from dedup.models import DedupGroup

from .models import BugReport, BugReportEvent, ClaimAttempt


def report_list(*, filters: dict | None = None):
    """Reports with what the API shows per row computed in the same query."""
    # COUNT(*), not COUNT(id): the count is read off bug_reports_duplicates_idx alone, which
    # for a hot bug's 100,000 duplicates is 10 ms instead of 70.
    duplicates = (
        BugReport.objects.filter(duplicate_of=OuterRef("pk"))
        .order_by()
        .values("duplicate_of")
        .annotate(n=Count("*"))
        .values("n")
    )
    return BugReport.objects.annotate(
        group_occurrences=Coalesce(F("dedup_group__occurrences"), Value(1)),
        duplicates_total=Coalesce(Subquery(duplicates), Value(0)),
    )


def report_with_counts(report: BugReport) -> BugReport:
    """A report already in hand (just claimed, say) with the numbers report_list() adds.

    Two scalar subqueries in plain SQL: reading the row back through report_list() cost
    more to compile than the claim itself.
    """
    if hasattr(report, "group_occurrences") and hasattr(report, "duplicates_total"):
        return report  # the claim statement returned them already
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT occurrences FROM {DedupGroup._meta.db_table} WHERE id = %s), "
            f"(SELECT COUNT(*) FROM {BugReport._meta.db_table} WHERE duplicate_of_id = %s)",
            [
                DedupGroup._meta.pk.get_db_prep_value(report.dedup_group_id, connection),
                BugReport._meta.pk.get_db_prep_value(report.pk, connection),
            ],
        )
        occurrences, duplicates = cursor.fetchone()
    report.group_occurrences = occurrences or 1
    report.duplicates_total = duplicates
    return report


def report_events(*, report_id):
    return BugReportEvent.objects.filter(report_id=report_id).order_by("created_at", "id")


def report_attempts(*, report_id):
    return ClaimAttempt.objects.filter(report_id=report_id).order_by("started_at", "id")
