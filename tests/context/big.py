"""A report as heavy as they come: huge trace, hundreds of notes, many duplicates."""

from datetime import timedelta

from django.utils import timezone

from reports.models import BugReport, BugReportEvent, ClaimAttempt
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


def past_attempts(report: BugReport, n: int = 15, *, size: int = 3000) -> list[ClaimAttempt]:
    """`n` ended claims of `report`, a minute apart, alternately an agent's release and (the
    newest) a worker run that failed with a long output: each with more text than the
    bundle shows."""
    start = timezone.now() - timedelta(hours=1)
    rows = []
    for i in range(n):
        worker = (n - 1 - i) % 2 == 0
        rows.append(
            ClaimAttempt(
                report=report,
                holder="worker:h:1" if worker else f"agent-{i}",
                claim_epoch=i + 1,
                token_hash=f"{i:064x}",
                started_at=start + timedelta(minutes=i),
                ended_at=start + timedelta(minutes=i, seconds=30),
                outcome="failed" if worker else "released",
                reason="" if worker else "cannot_reproduce",
                note=f"attempt {i}: " + "could not get the fixture to load; " * (size // 36),
                exit_code=1 if worker else None,
                output_tail=(
                    f"run {i}\n" + "E   AssertionError\n" * (size // 20) + f"FAILED {i}"
                    if worker
                    else ""
                ),
            )
        )
    return ClaimAttempt.objects.bulk_create(rows)
