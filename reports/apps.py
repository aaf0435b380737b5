from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here: the gauges read models, which need the app registry.
        from bugtracker.metrics import register_scrape_collector

        from . import metrics

        register_scrape_collector(metrics.collect)
