from django.core.management.base import BaseCommand, CommandError

from bugtracker.domain import DomainError
from bugtracker.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by name; requests with it get 401 from now on."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        try:
            api_key_revoke(name=name)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(self.style.SUCCESS(f"Revoked key {name!r}."))
