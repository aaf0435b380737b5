"""`backfill_json`: a run over legacy files, in batches, resumable, with archive and watch modes.

A run reads the files in sorted order, maps and validates each record, and hands batches
to `legacy_reports_import` (one transaction each). Memory stays flat: one file's reader and
one batch are alive at a time; nothing is kept per report except the details of invalid
and conflicting ones (for the summary) and, in a dry run, the ids already seen (a dry run
cannot ask the database about rows it did not write).

Checkpoint (`--checkpoint FILE`): before a batch commits, the state the run will be in once
it has committed (position, counters, files to archive, and a "probe": one legacy id the
batch inserts) is written to FILE.pending; after the commit FILE.pending replaces FILE.
A run killed between the two finds FILE.pending on restart and keeps it only if the probe
is in the database, i.e. if the batch really committed. Re-reading from the checkpoint
position then meets only records that are not in the database yet, so the resumed run
ends with the same rows, events, groups and summary as one that was never interrupted.
"""

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.db import transaction

from bugtracker.bulk import import_tuning
from reports.models import BugReport

from .files import RawRecord, atomic_write, iter_legacy_files, legacy_roots, path_key, read_records
from .mapping import InvalidReport, map_legacy
from .services import (
    IMPORT_ACTOR,
    BatchItem,
    Outcome,
    legacy_reports_group,
    legacy_reports_import,
)

CHECKPOINT_VERSION = 1
DEFAULT_BATCH_SIZE = 500
# Files younger than this may still be being written by the old submission path.
WATCH_SETTLE_SECONDS = 1.0


class CheckpointMismatch(Exception):
    """The checkpoint file belongs to a run over other paths."""


@dataclass
class Summary:
    files: int = 0
    read: int = 0
    inserted: int = 0
    already_present: int = 0
    conflicts: int = 0
    invalid: int = 0
    grouped: int | None = 0
    archived: int = 0
    invalid_details: list[dict] = field(default_factory=list)
    conflict_details: list[dict] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 1 if self.invalid else 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Summary":
        return cls(**data)


@dataclass
class _FileState:
    root: Path
    path: Path
    clean: bool = True  # every record inserted or already present: the file may be archived
    read_all: bool = False
    last_batch: int = -1  # the batch holding its last record


@dataclass
class Callbacks:
    """How a run reports progress to its caller (the command draws a bar on a terminal)."""

    on_file: Callable[[Path], None] | None = None
    on_batch: Callable[["Summary"], None] | None = None
    on_group: Callable[[int], None] | None = None


class Backfill:
    def __init__(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dry_run: bool = False,
        checkpoint: str | os.PathLike | None = None,
        archive_dir: str | os.PathLike | None = None,
        actor: str = IMPORT_ACTOR,
        callbacks: Callbacks | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if dry_run and checkpoint:
            raise ValueError("a dry run writes nothing, not even a checkpoint")
        self.roots = legacy_roots(paths)
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.archive_dir = Path(os.path.abspath(archive_dir)) if archive_dir else None
        self.actor = actor
        self.callbacks = callbacks or Callbacks()
        self.summary = Summary()
        self.resumed = False
        self.completed_before = False
        self._batch: list[tuple[BatchItem, _FileState]] = []
        self._batch_seq = 0
        self._files_waiting: list[_FileState] = []  # read, not yet archived
        self._archive_pending: list[tuple[str, str]] = []
        self._position: tuple[tuple[str, ...], int] | None = None
        self._current: _FileState | None = None  # the file being read
        self._resumed_file_clean = True
        self._phase = "import"
        self._seen: dict[str, str] = {}  # dry run only

    # -- one run -------------------------------------------------------------------------

    def run(self) -> Summary:
        with import_tuning():
            return self._run()

    def _run(self) -> Summary:
        self._load_checkpoint()
        if self.completed_before:
            return self.summary
        self._finish_archive_moves()
        if self._phase == "import":
            self.import_files(iter_legacy_files(self.roots), resume_from=self._position)
            self._phase = "group"
            self._save_checkpoint()
        self.group()
        self._phase = "done"
        self._save_checkpoint()
        return self.summary

    def import_files(
        self,
        files: Iterable[tuple[Path, Path]],
        *,
        resume_from: tuple[tuple[str, ...], int] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        for root, path in files:
            if stop is not None and stop.is_set():
                break
            if self.archive_dir is not None and path.is_relative_to(self.archive_dir):
                continue  # what we archived ourselves, if the archive lies inside a root
            key = path_key(path)
            skip_before = 0
            if resume_from is not None:
                if key < resume_from[0]:
                    if self.callbacks.on_file:
                        self.callbacks.on_file(path)
                    continue
                if key == resume_from[0]:
                    skip_before = resume_from[1]
            self._import_file(root, path, key, skip_before)
        self._flush()

    def _import_file(self, root: Path, path: Path, key: tuple[str, ...], skip_before: int) -> None:
        state = _FileState(root=root, path=path)
        if skip_before == 0:
            self.summary.files += 1
        else:
            # Resuming inside this file: what its first records did is in the checkpoint.
            state.clean = self._resumed_file_clean
        self._current = state
        if self.callbacks.on_file:
            self.callbacks.on_file(path)
        for record in read_records(path):
            if record.index < skip_before:
                continue
            self.summary.read += 1
            self._position = (key, record.index + 1)
            self._take(record, state)
            if len(self._batch) >= self.batch_size:
                self._flush()
        state.read_all = True
        state.last_batch = self._batch_seq if self._batch else self._batch_seq - 1
        if self.archive_dir is not None and state.clean:
            self._files_waiting.append(state)
            if not self._batch:
                self._queue_archive_moves()
                self._finish_archive_moves()

    def _take(self, record: RawRecord, state: _FileState) -> None:
        if record.error is not None:
            self._invalid(record, record.error, state)
            return
        try:
            report = map_legacy(record.value)
        except InvalidReport as exc:
            self._invalid(record, str(exc), state)
            return
        self._batch.append((BatchItem(report=report, where=record.where), state))

    def _invalid(self, record: RawRecord, reason: str, state: _FileState) -> None:
        state.clean = False
        self.summary.invalid += 1
        self.summary.invalid_details.append(
            {"file": str(record.path), "location": record.location, "reason": reason}
        )

    def _flush(self) -> None:
        if not self._batch:
            return
        items = [item for item, _ in self._batch]
        if self.dry_run:
            outcomes = legacy_reports_import(items=items, dry_run=True, seen=self._seen)
            self._count(outcomes)
        else:
            with transaction.atomic():
                outcomes = legacy_reports_import(items=items, actor=self.actor)
                self._count(outcomes)
                self._queue_archive_moves(through_batch=self._batch_seq)
                probe = next(
                    (
                        i.report.legacy_id
                        for i, o in zip(items, outcomes, strict=True)
                        if o == Outcome.INSERTED
                    ),
                    None,
                )
                self._write_pending(probe)
            self._commit_checkpoint()
            self._finish_archive_moves()
        self._batch = []
        self._batch_seq += 1
        if self.callbacks.on_batch:
            self.callbacks.on_batch(self.summary)

    def _count(self, outcomes: list[Outcome]) -> None:
        for (item, state), outcome in zip(self._batch, outcomes, strict=True):
            if outcome == Outcome.INSERTED:
                self.summary.inserted += 1
            elif outcome == Outcome.PRESENT:
                self.summary.already_present += 1
            else:
                state.clean = False
                self.summary.conflicts += 1
                self.summary.conflict_details.append(
                    {
                        "legacy_id": item.report.legacy_id,
                        "where": item.where,
                        "reason": "differs from the copy read first (the first one read wins)",
                    }
                )

    def group(self) -> None:
        if self.dry_run:
            self.summary.grouped = None
            return
        grouped = legacy_reports_group(actor=self.actor, on_progress=self.callbacks.on_group)
        self.summary.grouped = (self.summary.grouped or 0) + grouped

    # -- archive -------------------------------------------------------------------------

    def _queue_archive_moves(self, through_batch: int | None = None) -> None:
        """Files whose every record is in the database (once this batch commits) move next."""
        if self.archive_dir is None:
            return
        last = self._batch_seq - 1 if through_batch is None else through_batch
        waiting = []
        for state in self._files_waiting:
            if state.read_all and state.last_batch <= last:
                if state.clean:
                    self._archive_pending.append(
                        (str(state.path), str(self._archive_target(state)))
                    )
            else:
                waiting.append(state)
        self._files_waiting = waiting

    def _archive_target(self, state: _FileState) -> Path:
        relative = (
            Path(state.root.name)
            if state.root == state.path
            else (Path(state.root.name) / state.path.relative_to(state.root))
        )
        target = self.archive_dir / relative
        n = 1
        while target.exists() and not _same_file_content(target, state.path):
            target = target.with_name(f"{relative.stem}.{n}{relative.suffix}")
            n += 1
        return target

    def _finish_archive_moves(self) -> None:
        if not self._archive_pending:
            return
        for source, target in self._archive_pending:
            src, dst = Path(source), Path(target)
            if not src.exists():
                continue  # moved before an interruption
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() and _same_file_content(dst, src):
                src.unlink()
            else:
                shutil.move(src, dst)
            self.summary.archived += 1
        self._archive_pending = []
        self._save_checkpoint()

    # -- checkpoint ----------------------------------------------------------------------

    def _state(self, *, probe: str | None = None) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "paths": [str(r) for r in self.roots],
            "archive_dir": str(self.archive_dir) if self.archive_dir else None,
            "phase": self._phase,
            "current_file_clean": self._current.clean if self._current else True,
            "position": (
                {"file": list(self._position[0]), "index": self._position[1]}
                if self._position
                else None
            ),
            "summary": self.summary.as_dict(),
            "archive_pending": self._archive_pending,
            "probe": probe,
        }

    def _load_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        pending = _pending_path(self.checkpoint)
        if pending.exists():
            state = _read_json(pending)
            probe = state.get("probe") if state else None
            committed = state is not None and (
                probe is None or BugReport.objects.filter(legacy_id=probe).exists()
            )
            if committed:
                os.replace(pending, self.checkpoint)
            else:
                pending.unlink()
        state = _read_json(self.checkpoint) if self.checkpoint.exists() else None
        if state is None:
            return
        if state.get("version") != CHECKPOINT_VERSION or state.get("paths") != [
            str(r) for r in self.roots
        ]:
            raise CheckpointMismatch(
                f"{self.checkpoint} belongs to a run over {state.get('paths')}; "
                "give the same paths, or another checkpoint file."
            )
        self.resumed = True
        self.summary = Summary.from_dict(state["summary"])
        position = state.get("position")
        if position:
            self._position = (tuple(position["file"]), int(position["index"]))
        self._archive_pending = [tuple(p) for p in state.get("archive_pending") or []]
        self._resumed_file_clean = bool(state.get("current_file_clean", True))
        self._phase = state["phase"]
        self.completed_before = self._phase == "done"

    def _write_pending(self, probe: str | None) -> None:
        if self.checkpoint is not None:
            self._write_checkpoint(_pending_path(self.checkpoint), self._state(probe=probe))

    def _commit_checkpoint(self) -> None:
        if self.checkpoint is not None:
            os.replace(_pending_path(self.checkpoint), self.checkpoint)
            _fsync_dir(self.checkpoint.parent)

    def _save_checkpoint(self) -> None:
        if self.checkpoint is not None and not self.dry_run:
            self._write_checkpoint(self.checkpoint, self._state())

    @staticmethod
    def _write_checkpoint(path: Path, state: dict) -> None:
        atomic_write(path, json.dumps(state, indent=1).encode())

    # -- watch ---------------------------------------------------------------------------

    def watch(
        self,
        *,
        interval: float,
        stop: threading.Event,
        max_scans: int | None = None,
        on_scan: Callable[[Summary], None] | None = None,
    ) -> Summary:
        """Import new and changed files until `stop` is set (or after `max_scans` scans)."""
        with import_tuning():
            return self._watch(interval=interval, stop=stop, max_scans=max_scans, on_scan=on_scan)

    def _watch(self, *, interval, stop, max_scans, on_scan) -> Summary:
        signatures: dict[str, tuple[int, int]] = {}
        scans = 0
        while not stop.is_set():
            fresh = list(self._changed_files(signatures))
            if fresh:
                self.import_files(fresh, stop=stop)
                self.group()
                if on_scan:
                    on_scan(self.summary)
            scans += 1
            if max_scans is not None and scans >= max_scans:
                break
            stop.wait(interval)
        return self.summary

    def _changed_files(self, signatures: dict[str, tuple[int, int]]):
        now = time.time()
        for root, path in iter_legacy_files(self.roots):
            try:
                st = path.stat()
            except OSError:
                continue
            if now - st.st_mtime < WATCH_SETTLE_SECONDS:
                continue  # still being written, perhaps; next scan
            signature = (st.st_size, st.st_mtime_ns)
            if signatures.get(str(path)) == signature:
                continue
            signatures[str(path)] = signature
            yield root, path


def _pending_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".pending")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _same_file_content(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        return _sha256(a) == _sha256(b)
    except OSError:
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
