from django.core.management.base import BaseCommand, CommandError

from bugtracker.domain import DomainError
from bugtracker.models import Role
from bugtracker.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key; the key is printed once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The caller's identity (actor, assignee, claim holder).")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args, name, role, **options):
        try:
            key, raw = api_key_create(name=name, role=role)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"Created {key.role} key {key.name!r}. Store it now; it is not shown again:"
        )
        self.stdout.write(raw)
