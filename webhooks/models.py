import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class EventType(models.TextChoices):
    REPORT_CREATED = "report.created"
    REPORT_REGRESSED = "report.regressed"
    REPORT_CLAIMED = "report.claimed"
    REPORT_RELEASED = "report.released"
    REPORT_RESOLVED = "report.resolved"
    REPORT_VERIFIED = "report.verified"
    REPORT_NEEDS_HUMAN = "report.needs_human"
    AUTOMATION_DISABLED = "automation.disabled"
    SLA_BREACHED = "sla.breached"
    BACKLOG_ALERT = "backlog.alert"
    WEBHOOK_DISABLED = "webhook.disabled"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its first or next try
    SUCCEEDED = "succeeded"  # a 2xx answer
    FAILED = "failed"  # WEBHOOK_MAX_ATTEMPTS tries failed, or the endpoint was turned off


class Webhook(models.Model):
    """A subscription: where to POST which event types, and the secret that signs them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True, default="")
    secret = models.CharField(max_length=100)
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # The first failure since the last success: the endpoint is turned off when it is older
    # than WEBHOOK_DISABLE_AFTER_HOURS.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        db_table = "webhooks"
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.id} {self.url}"


class WebhookDelivery(models.Model):
    """The outbox: one event for one endpoint, written in the transaction of the change it
    tells of. `id` is the Standard Webhooks `webhook-id` (msg_<hex>), the same on every try."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    # The JSON body exactly as signed and sent. A report event's is rendered at its first
    # try and kept, so every retry sends the same bytes; other events carry theirs from the
    # start.
    report_id = models.UUIDField(null=True, blank=True)
    body = models.TextField(null=True, blank=True)
    event_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Due time of the next try; while a try runs, the end of its lease (a worker killed
    # mid-try leaves the delivery due again when the lease ends).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "webhook_deliveries"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_deliveries_due_idx",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["webhook", "created_at", "id"], name="webhook_deliveries_hook_idx"
            ),
        ]

    def __str__(self):
        return f"{self.event_type} to {self.webhook_id}: {self.status}"

    @property
    def message_id(self) -> str:
        return f"msg_{self.id.hex}"


class WebhookAttempt(models.Model):
    """One try of one delivery: what the endpoint answered, or why it could not be reached."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    succeeded = models.BooleanField(default=False)

    class Meta:
        db_table = "webhook_attempts"
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")
        ]

    def __str__(self):
        return f"try {self.number} of {self.delivery_id}"


class SlaBreachNotice(models.Model):
    """An SLA breach already told: `sla.breached` fires once per report and due time (a
    severity change moves the due time, and a new breach of it is a new crossing)."""

    report_id = models.UUIDField()
    sla_due_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "webhook_sla_notices"
        constraints = [
            models.UniqueConstraint(fields=["report_id", "sla_due_at"], name="sla_notice_once")
        ]

    def __str__(self):
        return f"SLA breach of {self.report_id} at {self.sla_due_at}"


class BacklogAlertState(models.Model):
    """A backlog alert firing and already told; deleted when it stops firing, so it is told
    again when it comes back."""

    kind = models.CharField(max_length=40, unique=True)
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "webhook_backlog_alerts"

    def __str__(self):
        return f"backlog alert {self.kind}"
