"""Rollout clean-up: archive the legacy files whose reports are verified in the database."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from legacy.archive import legacy_files_archive


class Command(BaseCommand):
    help = (
        "Write every legacy file under DIR whose reports are all in the database (same legacy "
        "id, same content) into ARCHIVE.tar.gz; with --delete, remove them afterwards. Files "
        "that are not verified stay where they are and are listed; the exit status is then 1."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", metavar="DIR")
        parser.add_argument("--to", required=True, metavar="ARCHIVE.tar.gz")
        parser.add_argument(
            "--delete",
            action="store_true",
            help="delete the archived files once the archive is complete",
        )

    def handle(self, *args, directory, to, delete, **options):
        if not Path(directory).is_dir():
            raise CommandError(f"{directory} is not a directory.")
        try:
            result = legacy_files_archive(directory=directory, to=to, delete=delete)
        except (FileExistsError, ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        reports = sum(check.reports for check in result.archived)
        self.stdout.write(f"Archived {len(result.archived)} files ({reports} reports) into {to}.")
        if delete:
            self.stdout.write(f"Deleted {result.deleted} archived files.")
        if result.kept:
            self.stdout.write(
                self.style.WARNING(
                    f"Kept {len(result.kept)} files that are not verified in the database:"
                )
            )
            for check in result.kept:
                problems = "; ".join(check.problems[:3])
                more = f" (+{len(check.problems) - 3} more)" if len(check.problems) > 3 else ""
                self.stdout.write(f"  {check.path}: {problems}{more}")
            sys.exit(1)
