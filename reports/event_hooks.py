"""Listeners told of report events inside the write of the event itself.

A listener (the webhook outbox) answers each event with SQL statements to run in the same
transaction, or as part of the same statement on the fast paths, so what it writes commits,
or not, with the event. Every event writer asks here, in one way per path:

- `statements_for(...)` with the report in hand (the ORM path, reports/writes.py);
- `statements_reading(...)` where the report exists only inside a SQL statement (the
  PostgreSQL claim statement): the listener reads the report id and time from a WITH part.

Reports imports no listener: apps register theirs from their AppConfig.ready().
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Statement = tuple[str, list]


@dataclass(frozen=True)
class ReportEvent:
    kind: str
    report: Any  # the BugReport as it stands when the event is sent
    data: dict
    created_at: datetime
    # Report columns whose value is decided inside the statement that writes the event
    # (reports/writes.py's lead), not known on `report` yet.
    decided_in_sql: frozenset = frozenset()


class EventListener(Protocol):
    def statements(self, event: ReportEvent, *, source: str = "") -> list[Statement]: ...

    def statements_reading(
        self, *, kind: str, source: str, report_id_sql: str, created_at_sql: str
    ) -> list[Statement]: ...


_listeners: list[EventListener] = []


def register_event_listener(listener: EventListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def statements_for(
    *,
    kind: str,
    report,
    data: dict | None,
    created_at: datetime,
    source: str = "",
    decided_in_sql: frozenset = frozenset(),
) -> list[Statement]:
    """What the listeners write with this event. `source`: a WITH part the statements must
    also select from, so they write only when it returns a row (reports/writes.py's lead)."""
    if not _listeners:
        return []
    event = ReportEvent(
        kind=kind,
        report=report,
        data=data or {},
        created_at=created_at,
        decided_in_sql=decided_in_sql,
    )
    return [s for listener in _listeners for s in listener.statements(event, source=source)]


def statements_reading(
    *, kind: str, source: str, report_id_sql: str, created_at_sql: str
) -> list[Statement]:
    return [
        s
        for listener in _listeners
        for s in listener.statements_reading(
            kind=kind, source=source, report_id_sql=report_id_sql, created_at_sql=created_at_sql
        )
    ]
