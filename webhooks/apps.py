from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here: the app registry must be ready before models load.
        from bugtracker.metrics import register_scrape_collector
        from reports.event_hooks import register_event_listener

        from . import events, metrics
        from .dispatcher import start_if_serving

        register_scrape_collector(metrics.collect)
        register_event_listener(events.listener)
        start_if_serving()
