from django.apps import AppConfig

from reports.signals import report_changed


class LegacyConfig(AppConfig):
    name = "legacy"

    def ready(self):
        # Imported here: the mirror reads models, which need the app registry.
        from .mirror import mirror_on_commit

        report_changed.connect(mirror_on_commit, dispatch_uid="legacy-mirror")
