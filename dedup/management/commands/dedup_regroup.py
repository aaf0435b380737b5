from django.core.management.base import BaseCommand, CommandError

from bugtracker.domain import DomainError
from dedup.fingerprint import FINGERPRINT_VERSION
from dedup.regroup import groups_regroup


class Command(BaseCommand):
    help = (
        "Recompute every report's fingerprint with the current rules and regroup the reports "
        "whose fingerprint changed (merges and splits made by hand stay). Run it after a "
        "change to the normalisation rules."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Change nothing; say how many reports would move (runs in one rolled-back "
            "transaction).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Reports per transaction (default 500)."
        )

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        verbosity = options.get("verbosity", 1)

        def progress(summary):
            if verbosity > 1:
                self.stdout.write(
                    f"  {summary.scanned} reports scanned, {summary.fingerprints_changed} changed"
                )

        try:
            summary = groups_regroup(batch_size=batch_size, dry_run=dry_run, progress=progress)
        except DomainError as error:
            raise CommandError(error.detail) from error
        verb = "would move" if dry_run else "moved"
        created = "would be created" if dry_run else "created"
        self.stdout.write(
            f"Fingerprint algorithm v{FINGERPRINT_VERSION}: {summary.scanned} reports scanned, "
            f"{summary.fingerprints_changed} fingerprints changed, "
            f"{summary.groups_created} new groups {created}."
        )
        message = f"{summary.moved} reports {verb} to another canonical report."
        self.stdout.write(self.style.WARNING(message) if dry_run else self.style.SUCCESS(message))
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
