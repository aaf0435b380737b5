from django.apps import AppConfig

from bugtracker.signals import write_refused

from .logging import log_refused_write


class TelemetryConfig(AppConfig):
    name = "telemetry"

    def ready(self):
        write_refused.connect(log_refused_write, dispatch_uid="telemetry-refused-write")
