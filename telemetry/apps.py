from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "telemetry"

    def ready(self):
        from .context import deployed_commit

        # Read the deployed git commit once, at start-up, not on the first request.
        deployed_commit()
