"""LEGACY_MIRROR_DIR: every new or changed report also written as a legacy-format JSON file.

During the cut-over, old agents that read the flat files keep seeing every report. Each
file is written atomically (temporary file + rename) after the transaction commits, from
the committed row, under a directory lock so a slow writer never puts an older version over
a newer one. Files carry a `_bugtracker` marker (`report_id`, `version`, `duplicate_of`, and
`attempts`: how many of `agent.attempts` were runs made here): `backfill_json`
recognises them, so mirroring and importing never echo each other's files back, and a
mirrored file imported into an empty database gives back the same report.

Imported reports are not mirrored when they are inserted (their legacy file exists
already); they are once something changes them.
"""

import json
import logging
import os
import re
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction

from reports.models import BugReport, BugReportEvent, EventKind

from .files import atomic_write
from .mapping import KNOWN_KEYS, MIRROR_MARKER, legacy_iso

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MIRRORED_EVENT_KINDS = (
    EventKind.NOTE,
    EventKind.STATUS_CHANGED,
    EventKind.AGENT_LOG,
    EventKind.RUN_FAILED,
)


def mirror_on_commit(sender=None, *, report_id, **kwargs) -> None:
    """`report_changed` receiver: when LEGACY_MIRROR_DIR is set, mirror the report once
    the current transaction commits."""
    directory = settings.LEGACY_MIRROR_DIR
    if directory:
        transaction.on_commit(partial(_mirror_quietly, report_id, directory))


def _mirror_quietly(report_id, directory: str) -> None:
    # The mirror is a courtesy to old agents: it must never fail the request that changed
    # the report, which has already committed.
    try:
        mirror_write(report_id=report_id, directory=directory)
    except Exception:
        logger.exception("legacy mirror: could not write report %s to %s", report_id, directory)


def mirror_path(report: BugReport, directory: str | os.PathLike) -> Path:
    name = report.legacy_id or str(report.pk)
    return Path(directory) / f"{_UNSAFE.sub('_', name)}.json"


def mirror_write(*, report_id, directory: str | os.PathLike) -> Path | None:
    """Write the report's current state as a legacy file; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _directory_lock(directory):
        report = BugReport.objects.filter(pk=report_id).first()
        if report is None:
            return None
        events = list(
            BugReportEvent.objects.filter(
                report_id=report.pk, kind__in=MIRRORED_EVENT_KINDS
            ).order_by("created_at", "id")
        )
        path = mirror_path(report, directory)
        record = legacy_record(report, events)
        atomic_write(path, json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8"))
        return path


@contextmanager
def _directory_lock(directory: Path):
    try:  # fcntl is POSIX-only: elsewhere the atomic renames alone protect the files
        import fcntl
    except ImportError:  # not on a POSIX system: atomic renames only
        yield
        return
    with open(directory / ".mirror.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def legacy_record(report: BugReport, events: list[BugReportEvent]) -> dict:
    """A report in the legacy format (`docs/legacy-format.md`), as old agents read it."""
    legacy = (report.metadata or {}).get("legacy") or {}
    extra = legacy.get("extra") or {}
    record: dict = {
        "id": report.legacy_id or str(report.pk),
        "title": report.title,
        "description": report.description,
        "status": report.status,
        "severity": report.severity,
        "category": report.category,
        "source": report.source,
        "created_at": legacy_iso(report.created_at),
        "updated_at": legacy_iso(report.updated_at),
    }
    if report.resolved_at:
        record["resolved_at"] = legacy_iso(report.resolved_at)
    reporter_rest = extra.get("reporter") if isinstance(extra.get("reporter"), dict) else None
    if report.reporter_id is not None:
        record["reporter"] = (
            {"id": report.reporter_id, **reporter_rest} if reporter_rest else report.reporter_id
        )
    if report.assignee_id is not None:
        record["assignee"] = report.assignee_id
    if report.stack_trace:
        record["stack_trace"] = report.stack_trace
    for key in ("component", "route"):
        if getattr(report, key) is not None:
            record[key] = getattr(report, key)
    context = {
        key: value
        for key, value in (
            ("trace_id", report.trace_id),
            ("request_id", report.request_id),
            ("release", report.release_sha),
            ("environment", report.environment),
        )
        if value is not None
    }
    context.update(report.telemetry or {})
    if context:
        record["context"] = context
    record["agent"] = _agent(report, events, legacy)
    notes = [
        {"at": legacy_iso(e.created_at), "author": e.actor, "text": e.message}
        for e in events
        if e.kind == EventKind.NOTE
    ]
    if notes:
        record["notes"] = notes
    history = [
        {
            "at": legacy_iso(e.created_at),
            "from": e.data.get("from"),
            "to": e.data.get("to"),
            "by": e.actor,
        }
        for e in events
        if e.kind == EventKind.STATUS_CHANGED and isinstance(e.data, dict)
    ]
    if history:
        record["history"] = history
    resolution_rest = extra.get("resolution") if isinstance(extra.get("resolution"), dict) else {}
    if report.resolution_notes or report.commit_shas or resolution_rest:
        record["resolution"] = {
            "notes": report.resolution_notes,
            "commits": list(report.commit_shas),
            **resolution_rest,
        }
    for key, value in extra.items():
        if key not in KNOWN_KEYS and key not in record:
            record[key] = value
    record[MIRROR_MARKER] = {
        "report_id": str(report.pk),
        "version": report.version,
        "duplicate_of": str(report.duplicate_of_id) if report.duplicate_of_id else None,
        "attempts": report.attempts,
    }
    return record


def _agent(report: BugReport, events: list[BugReportEvent], legacy: dict) -> dict:
    # Old agents count every attempt, theirs and ours; the marker keeps ours apart.
    attempts = report.attempts + (legacy.get("attempts") or 0)
    extra = legacy.get("extra") or {}
    agent: dict = {"attempts": attempts, "automation_enabled": report.automation_enabled}
    errors = [
        e.message
        for e in events
        if e.kind == EventKind.RUN_FAILED
        or (e.kind == EventKind.AGENT_LOG and (e.data or {}).get("legacy") == "last_error")
    ]
    if errors:
        agent["last_error"] = errors[-1]
    if isinstance(extra.get("agent"), dict):
        agent.update({k: v for k, v in extra["agent"].items() if k not in agent})
    return agent
