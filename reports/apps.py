from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # ready() runs for every command and may run twice: the guard starts the worker only
        # when BUGTRACKER_WORKER is on, in a process that serves the app, once per process.
        # Imported here: the app registry must be ready before models load.
        from bugtracker.metrics import register_scrape_collector

        from . import metrics
        from .worker import start_if_serving

        register_scrape_collector(metrics.collect)
        start_if_serving()
