import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Severity(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# Lower rank sorts first: the priority order agents work in.
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


class Status(models.TextChoices):
    NEW = "new"
    TRIAGED = "triaged"
    IN_PROGRESS = "in_progress"
    AWAITING_VERIFICATION = "awaiting_verification"
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES = (Status.NEW, Status.TRIAGED, Status.IN_PROGRESS, Status.AWAITING_VERIFICATION)
DONE_STATUSES = (Status.RESOLVED, Status.CLOSED)

ALLOWED_TRANSITIONS = {
    Status.NEW: {Status.TRIAGED, Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED},
    Status.TRIAGED: {Status.NEW, Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED},
    Status.IN_PROGRESS: {Status.TRIAGED, Status.AWAITING_VERIFICATION, Status.RESOLVED},
    Status.AWAITING_VERIFICATION: {Status.IN_PROGRESS, Status.TRIAGED, Status.RESOLVED},
    Status.RESOLVED: {Status.CLOSED, Status.TRIAGED},
    Status.CLOSED: {Status.TRIAGED},
}


class Source(models.TextChoices):
    USER = "user"
    AGENT = "agent"
    SYSTEM = "system"


def _choices_check(field, choices, name):
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)


class BugReport(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True, default="")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    severity_rank = models.GeneratedField(
        expression=models.Case(
            *[models.When(severity=s, then=models.Value(r)) for s, r in SEVERITY_RANK.items()],
            default=models.Value(9),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    category = models.CharField(max_length=100, null=True, blank=True)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.NEW)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.USER)
    reporter_id = models.CharField(max_length=200, null=True, blank=True)
    assignee_id = models.CharField(max_length=200, null=True, blank=True)
    component = models.CharField(max_length=200, null=True, blank=True)
    route = models.CharField(max_length=500, null=True, blank=True)
    environment = models.CharField(max_length=100, null=True, blank=True)
    stack_trace = models.TextField(blank=True, default="")

    trace_id = models.CharField(max_length=64, null=True, blank=True)
    request_id = models.CharField(max_length=200, null=True, blank=True)
    release_sha = models.CharField(max_length=64, null=True, blank=True)
    telemetry = models.JSONField(default=dict, blank=True)

    # Indexed with created_at (bug_reports_duplicates_idx), not alone.
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="duplicates",
        db_index=False,
    )
    dedup_group = models.ForeignKey(
        "dedup.DedupGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )
    fingerprint = models.CharField(max_length=64, null=True, blank=True)
    fingerprint_version = models.PositiveSmallIntegerField(null=True, blank=True)

    automation_enabled = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    # New columns carry database defaults too: rows written in SQL (bulk loads, benchmarks)
    # that do not name them stay valid.
    # Out of the claim-next pool until a human (an admin key) clears it.
    needs_human = models.BooleanField(default=False, db_default=False)

    resolution_notes = models.TextField(blank=True, default="")
    commit_shas = models.JSONField(default=list, blank=True)
    resolved_in_release = models.CharField(max_length=64, null=True, blank=True)
    # Evidence a fixer sends with its resolve, and who resolved (the four-eyes rule).
    pr_url = models.CharField(max_length=2000, null=True, blank=True)
    tests = models.JSONField(
        default=list, db_default=models.Value([], models.JSONField()), blank=True
    )
    resolved_by = models.CharField(max_length=200, null=True, blank=True)
    verified_by = models.CharField(max_length=200, null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_notes = models.TextField(blank=True, default="", db_default="")

    claim_holder = models.CharField(max_length=200, null=True, blank=True)
    claim_token_hash = models.CharField(max_length=64, null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # +1 with every claim and re-claim: external systems fence a stale holder's writes with it.
    claim_epoch = models.PositiveIntegerField(default=0, db_default=0)

    version = models.PositiveIntegerField(default=1)
    legacy_id = models.CharField(max_length=200, null=True, blank=True, unique=True)
    metadata = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    sla_due_at = models.DateTimeField()

    class Meta:
        db_table = "bug_reports"
        ordering = ["severity_rank", "sla_due_at", "created_at", "id"]
        indexes = [
            models.Index(fields=["trace_id"], name="bug_reports_trace_idx"),
            models.Index(fields=["request_id"], name="bug_reports_request_idx"),
            models.Index(fields=["status"], name="bug_reports_status_idx"),
            models.Index(fields=["created_at", "id"], name="bug_reports_created_idx"),
            models.Index(fields=["release_sha"], name="bug_reports_release_idx"),
            # A report's duplicates, newest first (the context bundle reads only the latest);
            # also their count and the foreign key's lookups.
            models.Index(fields=["duplicate_of", "-created_at"], name="bug_reports_duplicates_idx"),
            # assigned_to=…: one assignee's reports already in priority order.
            models.Index(
                fields=["assignee_id", "severity_rank", "sla_due_at", "created_at", "id"],
                name="bug_reports_assignee_idx",
            ),
            models.Index(fields=["fingerprint"], name="bug_reports_fingerprint_idx"),
            # The default agent queue: open canonical reports by priority.
            models.Index(
                fields=["severity_rank", "sla_due_at", "created_at", "id"],
                name="bug_reports_queue_idx",
                condition=Q(
                    status__in=["new", "triaged", "in_progress", "awaiting_verification"],
                    duplicate_of__isnull=True,
                ),
            ),
            # Every canonical report by priority: the default list without a status filter,
            # and `q=` with a common word (walking this beats sorting every match).
            models.Index(
                fields=["severity_rank", "sla_due_at", "created_at", "id"],
                name="bug_reports_priority_idx",
                condition=Q(duplicate_of__isnull=True),
            ),
            # The context bundle's "open reports at the same place" (component and route), in
            # priority order: the first five are read straight off it, even where a hot bug's
            # many duplicates make the planner expect to find them sooner by walking the queue.
            models.Index(
                fields=["component", "route", "severity_rank", "sla_due_at", "created_at", "id"],
                name="bug_reports_place_idx",
                condition=Q(
                    status__in=["new", "triaged", "in_progress", "awaiting_verification"],
                    duplicate_of__isnull=True,
                ),
            ),
            models.Index(
                fields=["sla_due_at"],
                name="bug_reports_sla_idx",
                condition=Q(status__in=["new", "triaged", "in_progress", "awaiting_verification"]),
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="bug_reports_automation_idx",
                condition=Q(automation_enabled=True, status__in=["new", "triaged"]),
            ),
        ]
        constraints = [
            _choices_check("severity", Severity, "bug_reports_severity_valid"),
            _choices_check("status", Status, "bug_reports_status_valid"),
            _choices_check("source", Source, "bug_reports_source_valid"),
            models.CheckConstraint(
                condition=~Q(duplicate_of=models.F("id")), name="bug_reports_not_own_duplicate"
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1), name="bug_reports_version_positive"
            ),
        ]

    def __str__(self):
        return f"{self.id} {self.title[:60]}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def sla_breached(self) -> bool:
        return bool(self.is_open and self.sla_due_at and timezone.now() > self.sla_due_at)

    def claim_is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return bool(self.claim_holder and self.claim_expires_at and self.claim_expires_at > now)


class EventKind(models.TextChoices):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    FIELD_CHANGED = "field_changed"
    NOTE = "note"
    AGENT_LOG = "agent_log"
    AGENT_ACTION = "agent_action"
    CLAIMED = "claimed"
    RELEASED = "released"
    HEARTBEAT = "heartbeat"
    LEASE_EXPIRED = "lease_expired"
    RESOLVED = "resolved"
    DUPLICATE_LINKED = "duplicate_linked"
    MERGED = "merged"
    SPLIT = "split"
    REGRESSED = "regressed"
    ENRICHED = "enriched"
    IMPORTED = "imported"
    RUN_FAILED = "run_failed"
    AUTOMATION_DISABLED = "automation_disabled"
    CLAIM_RENEWED = "claim_renewed"
    NEEDS_HUMAN = "needs_human"
    VERIFIED = "verified"


class BugReportEvent(models.Model):
    # Indexed by bug_events_report_idx (report first): a second index would only cost writes.
    report = models.ForeignKey(
        BugReport, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    actor = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "bug_report_events"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["report", "created_at", "id"], name="bug_events_report_idx")
        ]

    def __str__(self):
        return f"{self.kind} on {self.report_id}"


class AttemptOutcome(models.TextChoices):
    RUNNING = "running"
    RESOLVED = "resolved"
    RELEASED = "released"
    EXPIRED = "expired"
    TAKEN_OVER = "taken_over"
    # Worker runs only.
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"


class ReleaseReason(models.TextChoices):
    CANNOT_REPRODUCE = "cannot_reproduce"
    NEEDS_INFO = "needs_info"
    ENV_ERROR = "env_error"
    TOO_BIG = "too_big"
    NOT_A_BUG = "not_a_bug"
    BUDGET_EXHAUSTED = "budget_exhausted"
    OTHER = "other"


class AttemptPurpose(models.TextChoices):
    FIX = "fix"
    VERIFY = "verify"


class Verification(models.TextChoices):
    PASSED = "passed"
    FAILED = "failed"


class ClaimAttempt(models.Model):
    """One claim of a report, from its start to its end, whoever held it (an agent over the
    API or the worker). Its own table rather than AgentRun: a claim is the claims' concern
    (reports), a run of the remediation command is the worker's (remediation, above
    reports); the claim statement writes this row, and a worker run's exit code and output
    are copied here when the run ends."""

    report = models.ForeignKey(
        BugReport, on_delete=models.CASCADE, related_name="claim_attempts", db_index=False
    )
    holder = models.CharField(max_length=200)
    claim_epoch = models.PositiveIntegerField()
    purpose = models.CharField(
        max_length=16, choices=AttemptPurpose.choices, default=AttemptPurpose.FIX
    )
    # The claim's token hash: a token of an ended attempt is "lease lost", any other "mismatch".
    token_hash = models.CharField(max_length=64)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.RUNNING
    )
    reason = models.CharField(max_length=32, blank=True, default="")
    note = models.TextField(blank=True, default="")
    exit_code = models.IntegerField(null=True, blank=True)
    output_tail = models.TextField(blank=True, default="")
    # Set on a fix attempt once it is verified; null before (and on every other attempt).
    verification = models.CharField(
        max_length=16, choices=Verification.choices, null=True, blank=True, default=None
    )

    class Meta:
        db_table = "claim_attempts"
        ordering = ["started_at", "id"]
        indexes = [
            models.Index(fields=["report", "started_at", "id"], name="claim_attempts_report_idx"),
            # claim-next's "not released by me lately" test.
            models.Index(
                fields=["holder", "report", "ended_at"],
                name="claim_attempts_released_idx",
                condition=Q(outcome="released"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["report", "claim_epoch"], name="claim_attempts_one_per_epoch"
            ),
            # At most one running attempt per report: the one of its live claim.
            models.UniqueConstraint(
                fields=["report"],
                condition=Q(ended_at__isnull=True),
                name="claim_attempts_one_running",
            ),
            _choices_check("outcome", AttemptOutcome, "claim_attempts_outcome_valid"),
        ]

    def __str__(self):
        return f"attempt {self.claim_epoch} of {self.report_id}: {self.outcome}"
