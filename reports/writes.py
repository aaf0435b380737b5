"""Writes of one change sent together: one round trip on PostgreSQL.

A submission writes the report, its `created` event and, for a duplicate, its group's
occurrence count and a `duplicate_linked` event. Sent one by one that is four round trips
(and the ORM compiling each); here they become one statement on PostgreSQL, every write but
the last a data-modifying WITH, and run one after another elsewhere.

Only for writes that do not read each other's effects: the parts of one PostgreSQL
statement see the same snapshot and run in no set order. Events are the exception: they go
out as one INSERT, so their ids follow the order they were added. Foreign keys are checked
at commit, so an event may name the report inserted beside it.

On PostgreSQL a `lead` may gate the writes: a statement with RETURNING that runs first
(`WITH lead AS (…)`); the inserts and events are written only when it returns a row, and
may read that row (`lead.<column>`). When it returns none, nothing is written and the
writes stay queued, without the lead and what read it, to be sent another way.
"""

from datetime import datetime

from django.db import connection
from django.utils import timezone

from bugtracker.rows import insert_statement

from . import event_hooks
from .models import BugReportEvent

_EVENT_COLUMNS = ("report_id", "kind", "actor", "message", "data", "created_at")
_EVENT_FIELDS = [
    next(f for f in BugReportEvent._meta.concrete_fields if f.attname == c) for c in _EVENT_COLUMNS
]
_EVENT_TABLE = BugReportEvent._meta.db_table
# How each value is typed where it is not a column value (a SELECT feeding the INSERT).
_EVENT_CASTS = ("uuid", "text", "text", "text", "jsonb", "timestamptz")


class Writes:
    def __init__(self):
        self._statements: list[tuple[str, list]] = []
        # (object, column expressions); their SQL is built when sent, from the objects then.
        self._inserts: list[tuple[object, dict[str, str]]] = []
        # (value SQL per column, params, reads the lead?, (kind, report, data, time)) per
        # event; the last part is what event listeners (the webhook outbox) are told.
        self._events: list[tuple[list[str], list, bool, tuple]] = []
        self._lead: tuple[str, list] | None = None

    def insert(self, obj) -> None:
        """INSERT `obj` as save(force_insert=True) would, with its values as they are when
        the writes are sent."""
        self._inserts.append((obj, {}))

    def add(self, sql: str, params: list) -> None:
        self._statements.append((sql, params))

    def lead(self, sql: str, params: list, *, expressions: dict | None = None) -> None:
        """PostgreSQL only: gate the inserts and events on `sql` returning a row (see the
        module's docstring). `expressions` maps an inserted object to columns (by attname)
        given as SQL over the lead's row instead of the object's values."""
        if self._statements:
            raise ValueError("Statements added with add() cannot be gated by a lead.")
        self._lead = (sql, params)
        for obj, own in self._inserts:
            own.clear()
            own.update((expressions or {}).get(obj, {}))

    def event(
        self,
        *,
        report,
        kind: str,
        actor: str = "",
        message: str = "",
        data: dict | None = None,
        created_at: datetime | None = None,
    ) -> None:
        """An event row, as lifecycle.write_event() would write it."""
        created_at = created_at or timezone.now()
        values = [report.pk, kind, actor or "", message or "", data or {}, created_at]
        pairs = zip(_EVENT_FIELDS, values, strict=True)
        params = [f.get_db_prep_save(v, connection) for f, v in pairs]
        told = (kind, report, data, created_at)
        self._events.append((["%s"] * len(_EVENT_COLUMNS), params, False, told))

    def lead_event(self, *, report, kind: str, actor: str, message_sql, data_sql, created_at):
        """An event row whose `message_sql` and `data_sql` ((SQL, params) each) read the
        lead's row; dropped when the lead returns none."""
        values = [
            "%s::uuid",
            "%s::text",
            "%s::text",
            message_sql[0],
            data_sql[0],
            "%s::timestamptz",
        ]
        report_field, *_, created_field = _EVENT_FIELDS
        params = [
            report_field.get_db_prep_save(report.pk, connection),
            kind,
            actor or "",
            *message_sql[1],
            *data_sql[1],
            created_field.get_db_prep_save(created_at, connection),
        ]
        self._events.append((values, params, True, (kind, report, {}, created_at)))

    def _events_statement(self, *, gated: bool) -> tuple[str, list]:
        columns = ", ".join(_EVENT_COLUMNS)
        params = [p for _, ps, _, _ in self._events for p in ps]
        if not gated:
            rows = ", ".join("(" + ", ".join(values) + ")" for values, _, _, _ in self._events)
            return f"INSERT INTO {_EVENT_TABLE} ({columns}) VALUES {rows}", params
        # A SELECT from the lead per row, in the order the rows were added.
        selects = []
        for step, (values, _, _, _) in enumerate(self._events):
            typed = [
                v if v != "%s" else f"%s::{cast}"
                for v, cast in zip(values, _EVENT_CASTS, strict=True)
            ]
            names = ", ".join(f"{v} AS {c}" for v, c in zip(typed, _EVENT_COLUMNS, strict=True))
            selects.append(f"SELECT {step} AS step, {names} FROM lead")
        union = " UNION ALL ".join(selects)
        sql = f"INSERT INTO {_EVENT_TABLE} ({columns}) SELECT {columns} FROM ({union}) AS e ORDER BY step"
        return sql, params

    def _listener_statements(self, *, gated: bool) -> list[tuple[str, list]]:
        """What event listeners write with these events, in the same statement (gated by
        the lead too when there is one), built from the reports as they are now."""
        from_lead = {id(obj): frozenset(own) for obj, own in self._inserts}
        statements = []
        for _, _, _, (kind, report, data, created_at) in self._events:
            statements += event_hooks.statements_for(
                kind=kind,
                report=report,
                data=data,
                created_at=created_at,
                source="lead" if gated else "",
                decided_in_sql=from_lead.get(id(report), frozenset()) if gated else frozenset(),
            )
        return statements

    def execute(self):
        """Send everything. With a lead: its row, or None when it returned none (and then
        nothing was written and the writes stay queued, without the lead)."""
        lead = self._lead
        gated = lead is not None
        statements = [insert_statement(obj, own, gated=gated) for obj, own in self._inserts]
        statements += self._statements
        if self._events:
            statements.append(self._events_statement(gated=gated))
            statements += self._listener_statements(gated=gated)
        row = None
        with connection.cursor() as cursor:
            if gated:
                parts = [f"lead AS ({lead[0]})"]
                parts += [f"w{i} AS ({sql})" for i, (sql, _) in enumerate(statements)]
                params = list(lead[1]) + [p for _, ps in statements for p in ps]
                cursor.execute(f"WITH {', '.join(parts)} SELECT * FROM lead", params)
                row = cursor.fetchone()
            elif connection.vendor == "postgresql" and len(statements) > 1:
                *first, (last_sql, last_params) = statements
                parts = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(first))
                params = [p for _, ps in first for p in ps] + list(last_params)
                cursor.execute(f"WITH {parts} {last_sql}", params)
            else:
                for sql, params in statements:
                    cursor.execute(sql, params)
        self._lead = None
        if gated and row is None:
            for _, own in self._inserts:
                own.clear()
            self._events = [event for event in self._events if not event[2]]
            return None
        for obj, _ in self._inserts:
            obj._state.adding = False
            obj._state.db = connection.alias
        self._statements, self._inserts, self._events = [], [], []
        return row
