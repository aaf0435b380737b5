from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bugtracker.domain import DomainError
from bugtracker.models import Role
from bugtracker.services import api_key_create, api_key_create_with_dsn


class Command(BaseCommand):
    help = "Create an API key; the key is printed once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The caller's identity (actor, assignee, claim holder).")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument(
            "--dsn",
            action="store_true",
            help="Also print a Sentry DSN for this key (Sentry SDKs report with it).",
        )
        parser.add_argument(
            "--host",
            default=None,
            help="Host (and port, optionally scheme) the DSN points at; default INGEST_DSN_HOST.",
        )

    def handle(self, *args, name, role, dsn, host, **options):
        try:
            if dsn:
                key, raw, dsn_text = api_key_create_with_dsn(
                    name=name, role=role, host=host or settings.INGEST_DSN_HOST
                )
            else:
                key, raw = api_key_create(name=name, role=role)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        if dsn:
            self.stdout.write(f"DSN (for a Sentry SDK; also shown only now): {dsn_text}")
        self.stdout.write(
            f"Created {key.role} key {key.name!r}. Store it now; it is not shown again:"
        )
        self.stdout.write(raw)
