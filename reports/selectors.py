from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from .models import BugReport, BugReportEvent


def report_list(*, filters: dict | None = None):
    """Reports with what the API shows per row computed in the same query."""
    duplicates = (
        BugReport.objects.filter(duplicate_of=OuterRef("pk"))
        .order_by()
        .values("duplicate_of")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return BugReport.objects.annotate(
        group_occurrences=Coalesce(F("dedup_group__occurrences"), Value(1)),
        duplicates_total=Coalesce(Subquery(duplicates), Value(0)),
    )


def report_events(*, report_id):
    return BugReportEvent.objects.filter(report_id=report_id).order_by("created_at", "id")
