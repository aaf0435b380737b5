from django.apps import AppConfig


class RemediationConfig(AppConfig):
    """Automated remediation: the worker, its runs (AgentRun) and their services.

    ready() starts nothing: the serving entry points start the worker (startup.py); it only
    registers the runs' gauges with /metrics."""

    name = "remediation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here: the gauges read models, which need the app registry.
        from bugtracker.metrics import register_scrape_collector

        from . import metrics

        register_scrape_collector(metrics.collect)
