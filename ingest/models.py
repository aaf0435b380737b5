from django.db import models
from django.utils import timezone


class DsnKey(models.Model):
    """The public key of a DSN, mapped to the API key whose name and role it reports with.

    The project id in the DSN is this row's id. Only the key's SHA-256 is stored: a DSN is
    a credential to submit with.
    """

    api_key = models.OneToOneField(
        "bugtracker.ApiKey", on_delete=models.CASCADE, related_name="dsn_key"
    )
    public_key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "ingest_dsn_keys"

    def __str__(self):
        return f"DSN project {self.pk} of {self.api_key_id}"
