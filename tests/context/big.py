"""A report as heavy as they come: huge trace, hundreds of notes, many duplicates."""

from datetime import timedelta

from django.utils import timezone

from reports.models import BugReport, BugReportEvent
from tests.factories import make_report

from .traces import huge_trace, real_report


def heavy_report(*, n: int = 7, notes: int = 200, duplicates: int = 30, note_size: int = 3000):
    report = real_report(n, trace_id=f"trace-{n}", release_sha="b" * 40)
    now = timezone.now()
    BugReportEvent.objects.bulk_create(
        BugReportEvent(
            report=report,
            kind=["note", "agent_log", "agent_action"][i % 3],
            actor=f"agent-{i % 4}",
            message=f"note {i}: " + "tried reproducing with the fixture set; " * (note_size // 40),
            created_at=now + timedelta(milliseconds=i),
        )
        for i in range(notes)
    )
    for i in range(duplicates):
        make_report(
            title=f"KeyError in checkout for customer {i}",
            stack_trace=huge_trace(n),
            component=report.component,
            route=report.route,
            environment=["production", "staging"][i % 2],
            release_sha=f"{i % 3:x}" * 40,
        )
    report = BugReport.objects.get(pk=report.pk)
    assert report.duplicates.count() == duplicates
    return report
