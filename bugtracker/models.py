from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    REPORTER = "reporter"
    AGENT = "agent"
    ADMIN = "admin"


class ApiKey(models.Model):
    """A caller. Only the SHA-256 of the key is stored; the name is the caller's identity."""

    name = models.CharField(max_length=200, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_keys"
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="api_keys_role_valid")
        ]

    def __str__(self):
        return f"{self.name} ({self.role})"

    @property
    def is_authenticated(self) -> bool:
        return True


class IdempotencyRecord(models.Model):
    """The first response to a POST with an Idempotency-Key, replayed for 24 hours."""

    caller = models.CharField(max_length=200)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    body_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "idempotency_records"
        constraints = [
            models.UniqueConstraint(fields=["caller", "key"], name="idempotency_unique_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self):
        return f"{self.caller}:{self.key}"


class ThrottleWindow(models.Model):
    """Requests counted for one caller in one fixed window, when no shared cache is configured
    (bugtracker/throttling.py): every process sees the same count."""

    ident = models.CharField(max_length=64)
    window_start = models.BigIntegerField()  # Unix seconds
    expires = models.BigIntegerField()  # Unix seconds; expired rows are pruned
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "throttle_windows"
        constraints = [
            models.UniqueConstraint(fields=["ident", "window_start"], name="throttle_one_window")
        ]
        indexes = [models.Index(fields=["expires"], name="throttle_expires_idx")]

    def __str__(self):
        return f"{self.ident}@{self.window_start}: {self.hits}"
