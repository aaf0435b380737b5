from django.apps import AppConfig


class RemediationConfig(AppConfig):
    """Automated remediation: the worker, its runs (AgentRun) and their services.

    ready() starts nothing: the serving entry points start the worker (startup.py)."""

    name = "remediation"
    default_auto_field = "django.db.models.BigAutoField"
