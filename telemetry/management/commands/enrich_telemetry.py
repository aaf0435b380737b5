from django.core.management.base import BaseCommand, CommandError

from telemetry.services import enrich_missing_releases


class Command(BaseCommand):
    help = (
        "Fill release_sha on reports that lack one from the release registry (the release "
        "deployed to their environment at their created_at). Idempotent; safe to run anytime."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Reports per batch (default 500)."
        )

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        filled = enrich_missing_releases(batch_size=batch_size)
        noun = "report" if filled == 1 else "reports"
        self.stdout.write(self.style.SUCCESS(f"Filled release_sha on {filled} {noun}."))
