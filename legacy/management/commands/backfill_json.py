"""Import the legacy flat-file bug reports (see docs/rollout.md and docs/legacy-format.md)."""

import signal
import sys
import threading
from contextlib import nullcontext

from django.core.management.base import BaseCommand, CommandError

from legacy.backfill import (
    DEFAULT_BATCH_SIZE,
    Backfill,
    Callbacks,
    CheckpointMismatch,
    Summary,
)
from legacy.files import count_legacy_files
from legacy.services import IMPORT_ACTOR


class Command(BaseCommand):
    help = (
        "Import legacy JSON bug reports (files, arrays, JSON Lines) from PATH... in sorted "
        "order, in batches; idempotent (legacy ids are unique). Exit status 1 when any input "
        "was invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
        parser.add_argument(
            "--dry-run", action="store_true", help="write nothing; say what would happen"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"reports per transaction (default {DEFAULT_BATCH_SIZE})",
        )
        parser.add_argument(
            "--checkpoint",
            metavar="FILE",
            help="resume state; a killed run started again with it ends exactly as an "
            "uninterrupted one",
        )
        parser.add_argument(
            "--archive",
            metavar="DIR",
            help="move each file there once all its reports are in the database",
        )
        parser.add_argument(
            "--watch",
            action="store_true",
            help="keep importing new and changed files until stopped (SIGTERM or Ctrl-C)",
        )
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between scans with --watch"
        )
        parser.add_argument(
            "--max-scans", type=int, default=None, help="with --watch: stop after N scans"
        )
        parser.add_argument(
            "--actor", default=IMPORT_ACTOR, help=f"event actor (default {IMPORT_ACTOR})"
        )

    def handle(self, *args, **options):
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["dry_run"] and (options["checkpoint"] or options["archive"] or options["watch"]):
            raise CommandError(
                "--dry-run writes nothing: it cannot take --checkpoint, --archive or --watch."
            )
        if options["watch"] and options["checkpoint"]:
            raise CommandError("--watch needs no --checkpoint: every scan is idempotent.")
        progress = (
            _Progress(options["paths"]) if sys.stderr.isatty() and not options["watch"] else None
        )
        try:
            backfill = Backfill(
                options["paths"],
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                checkpoint=options["checkpoint"],
                archive_dir=options["archive"],
                actor=options["actor"],
                callbacks=progress.callbacks() if progress else None,
            )
            if options["watch"]:
                summary = self._watch(backfill, options)
            else:
                with progress or nullcontext():
                    summary = backfill.run()
        except CheckpointMismatch as exc:
            raise CommandError(str(exc)) from None
        if backfill.completed_before:
            self.stdout.write(f"Checkpoint {options['checkpoint']}: this run had already finished.")
        elif backfill.resumed:
            self.stdout.write(f"Resumed from checkpoint {options['checkpoint']}.")
        self._summary(summary, dry_run=options["dry_run"])
        if summary.exit_status:
            sys.exit(summary.exit_status)

    def _watch(self, backfill: Backfill, options) -> Summary:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"Watching {', '.join(options['paths'])} every {options['interval']}s.")

        def on_scan(summary: Summary) -> None:
            self.stdout.write(
                f"read {summary.read}, inserted {summary.inserted}, already present "
                f"{summary.already_present}, conflicts {summary.conflicts}, invalid {summary.invalid}"
            )
            self.stdout.flush()

        return backfill.watch(
            interval=options["interval"], stop=stop, max_scans=options["max_scans"], on_scan=on_scan
        )

    def _summary(self, summary: Summary, *, dry_run: bool) -> None:
        out = self.stdout
        if dry_run:
            out.write(self.style.WARNING("Dry run: nothing was written."))
        inserted = "would insert" if dry_run else "inserted"
        rows = [
            ("files", summary.files),
            ("read", summary.read),
            (inserted, summary.inserted),
            ("already present", summary.already_present),
            ("conflicts", summary.conflicts),
            ("invalid", summary.invalid),
        ]
        if not dry_run:
            rows.append(("grouped", summary.grouped))
        if summary.archived:
            rows.append(("archived files", summary.archived))
        out.write("Summary:")
        for label, value in rows:
            out.write(f"  {label + ':':<17} {value}")
        if summary.conflict_details:
            out.write(self.style.WARNING(f"Conflicts ({summary.conflicts}):"))
            for conflict in summary.conflict_details:
                out.write(f"  {conflict['legacy_id']} in {conflict['where']}: {conflict['reason']}")
        if summary.invalid_details:
            out.write(self.style.ERROR(f"Invalid ({summary.invalid}):"))
            for bad in summary.invalid_details:
                where = bad["file"] + (f" {bad['location']}" if bad["location"] else "")
                out.write(f"  {where}: {bad['reason']}")


class _Progress:
    """A rich progress bar on stderr, by files, with the running counts."""

    def __init__(self, paths):
        # Imported here: rich takes longer to import than a small import takes to run, and only a
        # run on a terminal shows a progress bar.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.files = self.progress.add_task("files", total=count_legacy_files(paths), counts="")
        self.grouping = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def callbacks(self) -> Callbacks:
        return Callbacks(on_file=self._file, on_batch=self._batch, on_group=self._group)

    def _file(self, path) -> None:
        self.progress.advance(self.files)

    def _batch(self, summary: Summary) -> None:
        self.progress.update(
            self.files,
            counts=f"read {summary.read} · new {summary.inserted} · present "
            f"{summary.already_present} · conflicts {summary.conflicts} · invalid {summary.invalid}",
        )

    def _group(self, n: int) -> None:
        if self.grouping is None:
            self.grouping = self.progress.add_task("grouping", total=None, counts="")
        self.progress.advance(self.grouping, n)
