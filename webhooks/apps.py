from django.apps import AppConfig

from bugtracker.signals import process_serving


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported here (all four): the app registry must be ready before models load.
        from bugtracker.metrics import register_scrape_collector
        from reports.event_hooks import register_event_listener

        from . import events, metrics  # models, so after the registry (above)
        from .dispatcher import on_serving  # likewise: its services read models

        register_scrape_collector(metrics.collect)
        register_event_listener(events.listener)
        process_serving.connect(on_serving, dispatch_uid="webhooks-dispatcher")
