from django.apps import AppConfig


class RemediationConfig(AppConfig):
    """Automated remediation: the worker, its runs (AgentRun) and their services.

    ready() starts nothing: the serving entry points start the worker (startup.py). It hands
    reports' context bundle the reader of a report's runs (its `attempts` section): reports
    may not import remediation, so remediation plugs itself in."""

    name = "remediation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here: the gauges read models, which need the app registry.
        from bugtracker.metrics import register_scrape_collector

        from . import metrics

        register_scrape_collector(metrics.collect)
        # Imported here too: the runs' reader reads AgentRun (and reports.context, models).
        from reports.context import register_attempts_reader

        from .selectors import recent_runs

        register_attempts_reader(recent_runs)
