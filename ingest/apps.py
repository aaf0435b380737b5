from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Sentry-protocol ingest"

    def ready(self):
        # Imports here, not at the top: models and services need the app registry ready.
        from bugtracker.services import register_dsn_issuer

        from .ratelimit import rate_limit  # the same: via bugtracker.throttling, models
        from .services import dsn_key_create  # the same: DsnKey, ApiKey, BugReport

        rate_limit()  # a malformed INGEST_RATE_PER_KEY stops start-up (ImproperlyConfigured)
        # `create_api_key --dsn` lives in bugtracker/, which imports no domain app: this app
        # hands it the DSN issuer instead.
        register_dsn_issuer(dsn_key_create)
