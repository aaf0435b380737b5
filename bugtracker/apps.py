from django.apps import AppConfig


class BugtrackerConfig(AppConfig):
    name = "bugtracker"
    verbose_name = "API plumbing: keys, idempotency"

    def ready(self):
        # Imported here: wakeups imports DRF, which reads settings the app registry provides.
        from django.core.signals import request_finished

        from .wakeups import keep_or_close_connection

        # After Django's own close_old_connections (connected when django.db loads).
        request_finished.connect(keep_or_close_connection, dispatch_uid="keep_or_close_connection")
