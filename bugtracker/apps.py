from django.apps import AppConfig


class BugtrackerConfig(AppConfig):
    name = "bugtracker"
    verbose_name = "API plumbing: keys, idempotency"
