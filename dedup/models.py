import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class DedupGroup(models.Model):
    """A canonical incident: every report whose fingerprint matched it within the window."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    fingerprint = models.CharField(max_length=64)
    algorithm_version = models.PositiveSmallIntegerField(default=1)
    # Every occurrence updates its group's row, and each index on the table is a write more
    # (occurrences and last_seen are indexed, so those updates are never HOT): no index twice,
    # and the rarely set links are indexed only where set.
    canonical = models.ForeignKey(
        "reports.BugReport",
        on_delete=models.CASCADE,
        related_name="canonical_groups",
        db_index=False,  # dedup_canonical_idx
    )
    occurrences = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    inputs = models.JSONField(default=dict, blank=True)
    releases_seen = models.JSONField(default=list, blank=True)
    # Only one active group per fingerprint; a group whose window lapsed is retired.
    active = models.BooleanField(default=True)
    # A group merged by hand keeps its fingerprint and sends its occurrences here
    # (always a group that is not itself merged: no chains).
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="merged_groups",
        db_index=False,  # dedup_merged_into_idx
    )
    # Set on the group a split made: it owns its fingerprint from then on.
    split_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="split_groups",
        db_index=False,  # dedup_split_from_idx
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "bug_report_dedup"
        ordering = ["-occurrences", "-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"], condition=Q(active=True), name="dedup_one_active_group"
            ),
            models.CheckConstraint(
                condition=Q(occurrences__gte=1), name="dedup_occurrences_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["canonical"], name="dedup_canonical_idx"),
            models.Index(fields=["occurrences", "last_seen", "id"], name="dedup_occurrences_idx"),
            models.Index(fields=["last_seen", "id"], name="dedup_last_seen_idx"),
            models.Index(
                fields=["merged_into"],
                condition=Q(merged_into__isnull=False),
                name="dedup_merged_into_idx",
            ),
            models.Index(
                fields=["split_from"],
                condition=Q(split_from__isnull=False),
                name="dedup_split_from_idx",
            ),
        ]

    def __str__(self):
        return f"{self.fingerprint[:12]} x{self.occurrences}"


class ClientFingerprint(models.Model):
    """The `fingerprint` list a client sent with a report, kept so a regroup can recompute it."""

    report = models.OneToOneField(
        "reports.BugReport", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    parts = models.JSONField(default=list)

    class Meta:
        db_table = "bug_report_client_fingerprints"

    def __str__(self):
        return f"{self.report_id}: {self.parts}"
