from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Sentry-protocol ingest"

    def ready(self):
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        from .ratelimit import parse_rate

        try:
            parse_rate(settings.INGEST_RATE_PER_KEY)
        except (ValueError, KeyError):
            raise ImproperlyConfigured(
                f"INGEST_RATE_PER_KEY={settings.INGEST_RATE_PER_KEY!r}: use e.g. 600/min."
            ) from None
        # `create_api_key --dsn` lives in bugtracker/, which imports no domain app: this app
        # hands it the DSN issuer instead.
        from bugtracker.services import register_dsn_issuer

        from .services import dsn_key_create

        register_dsn_issuer(dsn_key_create)
