from django.db import models
from django.utils import timezone


class Release(models.Model):
    """A deployment: which commit went to which environment, and when.

    A release is one sha in one environment: recording it again finds the first row.
    """

    sha = models.CharField(max_length=64)
    version = models.CharField(max_length=100, blank=True, default="")
    environment = models.CharField(max_length=100)
    deployed_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "releases"
        ordering = ["-deployed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sha", "environment"], name="releases_one_per_environment"
            )
        ]
        indexes = [
            models.Index(fields=["environment", "deployed_at"], name="releases_env_deployed_idx"),
            models.Index(fields=["sha"], name="releases_sha_idx"),
        ]

    def __str__(self):
        return f"{self.sha[:12]} to {self.environment} at {self.deployed_at:%Y-%m-%d %H:%M}"
