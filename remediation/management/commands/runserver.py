from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand

from remediation.startup import serving


class Command(RunserverCommand):
    """Django's runserver (with static files), which says that it serves: the process that
    runs the server (the autoreloader's child, or the only one with --noreload) starts its
    remediation worker when BUGTRACKER_WORKER is on."""

    def inner_run(self, *args, **options):
        serving("runserver")
        super().inner_run(*args, **options)
