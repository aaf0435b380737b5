"""The runs of the remediation command: one AgentRun per attempt on a report.

Moved here from reports (the table, `agent_runs`, and its index are the same; the move is
state only: remediation/migrations/0001_initial.py).
"""

from django.db import models
from django.utils import timezone

from reports.models import BugReport


class RunOutcome(models.TextChoices):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"


class AgentRun(models.Model):
    report = models.ForeignKey(BugReport, on_delete=models.CASCADE, related_name="runs")
    attempt = models.PositiveIntegerField()
    runner = models.CharField(max_length=200)
    command = models.JSONField(default=list)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices, null=True, blank=True)
    output_tail = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "agent_runs"
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["report", "started_at"], name="agent_runs_report_idx")]

    def __str__(self):
        return f"run {self.attempt} of {self.report_id}: {self.outcome}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
