from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # ready() runs for every command and may run twice: the guard starts the worker only
        # when BUGTRACKER_WORKER is on, in a process that serves the app, once per process.
        from .worker import start_if_serving

        start_if_serving()
