"""Rollout clean-up: which legacy files are fully in the database, and archiving them."""

import contextlib
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models.fields.json import KT

from bugtracker.bulk import in_list
from reports.models import BugReport

from .files import iter_legacy_files, read_records
from .mapping import InvalidReport, LegacyReport, map_legacy

LOOKUP_CHUNK = 500


@dataclass
class FileCheck:
    root: Path
    path: Path
    reports: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems


def legacy_files_verify(paths) -> Iterator[FileCheck]:
    """Each legacy file under `paths`, verified when every report in it is in the database.

    A report is there when a row has its legacy id and the digest of the same content (for
    a file our mirror wrote: when its report exists). Invalid records, missing reports and
    conflicting copies keep the file out.
    """
    for root, path in iter_legacy_files(paths):
        check = FileCheck(root=root, path=path)
        chunk: list[tuple[str, LegacyReport]] = []
        for record in read_records(path):
            if record.error is not None:
                check.problems.append(_located(record.location, record.error))
                continue
            try:
                report = map_legacy(record.value)
            except InvalidReport as exc:
                check.problems.append(_located(record.location, str(exc)))
                continue
            chunk.append((record.location, report))
            if len(chunk) >= LOOKUP_CHUNK:
                _verify_chunk(check, chunk)
                chunk = []
        if chunk:
            _verify_chunk(check, chunk)
        yield check


def _verify_chunk(check: FileCheck, chunk: list[tuple[str, LegacyReport]]) -> None:
    ids = [report.legacy_id for _, report in chunk]
    digests = dict(
        BugReport.objects.filter(legacy_id__in=in_list(ids)).values_list(
            "legacy_id", KT("metadata__legacy__digest")
        )
    )
    mirrored = [report.mirror_of for _, report in chunk if report.mirror_of]
    present_pks = set(
        BugReport.objects.filter(pk__in=in_list(mirrored, uuids=True)).values_list("pk", flat=True)
        if mirrored
        else []
    )
    for location, report in chunk:
        check.reports += 1
        where = f"{location}: " if location else ""
        if report.mirror_of is not None:
            if report.mirror_of not in present_pks and report.legacy_id not in digests:
                check.problems.append(f"{where}report {report.legacy_id} is not in the database")
        elif report.legacy_id not in digests:
            check.problems.append(f"{where}report {report.legacy_id} is not in the database")
        elif digests[report.legacy_id] != report.digest:
            check.problems.append(
                f"{where}report {report.legacy_id} differs from the copy in the database"
            )


@dataclass
class ArchiveResult:
    archived: list[FileCheck] = field(default_factory=list)
    kept: list[FileCheck] = field(default_factory=list)
    deleted: int = 0


def legacy_files_archive(
    *, directory: str | os.PathLike, to: str | os.PathLike, delete: bool
) -> ArchiveResult:
    """Put every verified file under `directory` into the tar.gz `to`; then delete them if asked.

    The archive is written under a temporary name and renamed when complete; files are only
    deleted after the finished archive has been read back and lists every one of them.
    """
    directory = Path(os.path.abspath(directory))
    target = Path(os.path.abspath(to))
    if target.exists():
        raise FileExistsError(f"{target} exists already; archives are never overwritten.")
    if target.is_relative_to(directory):
        raise ValueError("the archive cannot be written inside the directory it archives")
    partial = target.with_name(f".{target.name}.partial")
    result = ArchiveResult()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(partial, "w:gz") as tar:
        for check in legacy_files_verify([directory]):
            if check.verified:
                tar.add(check.path, arcname=_arcname(directory, check.path), recursive=False)
                result.archived.append(check)
            else:
                result.kept.append(check)
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    with tarfile.open(partial, "r:gz") as tar:
        names = set(tar.getnames())
    missing = [c.path for c in result.archived if _arcname(directory, c.path) not in names]
    if missing:
        partial.unlink()
        raise RuntimeError(f"the archive lacks {len(missing)} files; nothing was deleted")
    os.replace(partial, target)
    if delete:
        for check in result.archived:
            check.path.unlink(missing_ok=True)
            result.deleted += 1
        _remove_empty_dirs(directory)
    return result


def _located(location: str, problem: str) -> str:
    return f"{location}: {problem}" if location else problem


def _arcname(directory: Path, path: Path) -> str:
    return str(Path(directory.name) / path.relative_to(directory))


def _remove_empty_dirs(directory: Path) -> None:
    for current, _dirs, _files in os.walk(directory, topdown=False):
        if Path(current) != directory and not os.listdir(current):
            with contextlib.suppress(OSError):
                os.rmdir(current)
