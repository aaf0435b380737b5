from django.apps import AppConfig

from bugtracker.signals import write_refused

from .context import deployed_commit
from .logging import log_refused_write


class TelemetryConfig(AppConfig):
    name = "telemetry"

    def ready(self):
        write_refused.connect(log_refused_write, dispatch_uid="telemetry-refused-write")
        # Read the deployed git commit once, at start-up, not on the first request.
        deployed_commit()
