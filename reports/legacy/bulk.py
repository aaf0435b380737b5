"""Bulk writes for the import, without the ORM's per-value compile step.

`bulk_create` spends most of its time compiling each value of each row through the query
compiler. The import writes tens of thousands of rows of a few fixed shapes, so the values
are converted once per field kind (the same `get_db_prep_save` the ORM uses, only where a
backend needs it) and sent as one prepared statement: `executemany` on SQLite (a C loop
over one prepared statement), multi-row VALUES on PostgreSQL (one round trip per chunk).
"""

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from functools import lru_cache

from django.db import DEFAULT_DB_ALIAS, connections, models

# Values of these field kinds go to every backend as they are.
_PLAIN = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
)
# Keep each PostgreSQL statement well under its 65,535 parameter limit.
_PG_MAX_PARAMS = 30_000


def _converter(field: models.Field, conn) -> Callable | None:
    """f(value) -> what the driver gets, or None when the value goes as it is.

    The ORM's own conversion, with two shortcuts for what the import writes most: SQLite's
    datetimes (naive UTC text, as `adapt_datetimefield_value` writes them when the database
    time zone is UTC) and JSON (`json.dumps`, as `adapt_json_value` does without an encoder).
    """
    if isinstance(field, models.ForeignKey):
        target = field.target_field
        return None if isinstance(target, models.AutoField) else _converter(target, conn)
    if isinstance(field, _PLAIN):
        return None
    postgres = conn.vendor == "postgresql"
    if postgres and isinstance(field, (models.UUIDField, models.DateTimeField)):
        return None  # psycopg adapts uuid.UUID and aware datetimes natively
    if not postgres and isinstance(field, models.UUIDField):
        return _uuid_hex
    if isinstance(field, models.DateTimeField) and conn.timezone_name == "UTC":
        return _naive_utc_text
    if not postgres and isinstance(field, models.JSONField) and field.encoder is None:
        return json.dumps

    def convert(value, _field=field):
        return _field.get_db_prep_save(value, conn)

    return convert


def _uuid_hex(value):
    return value.hex if isinstance(value, uuid.UUID) else value


def _naive_utc_text(value):
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value)


@lru_cache(maxsize=32)
def _plan(model: type[models.Model], attnames: tuple[str, ...], alias: str, vendor: str):
    conn = connections[alias]
    meta = model._meta
    fields = [meta.get_field(name) for name in attnames]
    columns = [f.column for f in fields]
    converters = [(i, c) for i, f in enumerate(fields) if (c := _converter(f, conn)) is not None]
    return meta.db_table, columns, converters


def _prepare(converters, rows) -> list[list]:
    prepared = []
    for row in rows:
        values = list(row)
        for i, convert in converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        prepared.append(values)
    return prepared


def insert_rows(
    model: type[models.Model], attnames: Sequence[str], rows: Iterable[Sequence]
) -> int:
    """INSERT `rows` (tuples of python values in `attnames` order) into `model`'s table."""
    connection = connections[DEFAULT_DB_ALIAS]  # the real wrapper: no proxy lookup per value
    table, columns, converters = _plan(model, tuple(attnames), DEFAULT_DB_ALIAS, connection.vendor)
    prepared = _prepare(converters, rows)
    if not prepared:
        return 0
    qn = connection.ops.quote_name
    head = f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) VALUES "
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            per_statement = max(1, _PG_MAX_PARAMS // len(columns))
            for start in range(0, len(prepared), per_statement):
                chunk = prepared[start : start + per_statement]
                cursor.execute(
                    head + ", ".join([one] * len(chunk)), [v for row in chunk for v in row]
                )
        else:
            cursor.executemany(head + one, prepared)
    return len(prepared)


def update_rows(
    model: type[models.Model],
    set_attnames: Sequence[str],
    where_attnames: Sequence[str],
    rows: Iterable[Sequence],
) -> int:
    """UPDATE one row per tuple (set values, then where values); returns rows changed."""
    connection = connections[DEFAULT_DB_ALIAS]
    names = (*set_attnames, *where_attnames)
    table, columns, converters = _plan(model, tuple(names), DEFAULT_DB_ALIAS, connection.vendor)
    prepared = _prepare(converters, rows)
    if not prepared:
        return 0
    qn = connection.ops.quote_name
    n_set = len(set_attnames)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return _pg_update_from_values(
                connection, cursor, table, columns, n_set, prepared, model, names
            )
        assignments = ", ".join(f"{qn(c)} = %s" for c in columns[:n_set])
        condition = " AND ".join(f"{qn(c)} = %s" for c in columns[n_set:])
        cursor.executemany(f"UPDATE {qn(table)} SET {assignments} WHERE {condition}", prepared)
        return cursor.rowcount


def _pg_update_from_values(
    connection, cursor, table, columns, n_set, prepared, model, names
) -> int:
    """One UPDATE … FROM (VALUES …) per chunk: a round trip per chunk, not per row."""
    qn = connection.ops.quote_name
    meta = model._meta
    casts = [meta.get_field(name).db_type(connection) for name in names]
    casts = [c.split("(")[0] if c else "text" for c in casts]
    alias = [f"c{i}" for i in range(len(columns))]
    assignments = ", ".join(
        f"{qn(c)} = v.{a}" for c, a in zip(columns[:n_set], alias[:n_set], strict=True)
    )
    condition = " AND ".join(
        f"{qn(table)}.{qn(c)} = v.{a}" for c, a in zip(columns[n_set:], alias[n_set:], strict=True)
    )
    one = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    per_statement = max(1, _PG_MAX_PARAMS // len(columns))
    changed = 0
    for start in range(0, len(prepared), per_statement):
        chunk = prepared[start : start + per_statement]
        cursor.execute(
            f"UPDATE {qn(table)} SET {assignments} FROM (VALUES {', '.join([one] * len(chunk))}) "
            f"AS v({', '.join(alias)}) WHERE {condition}",
            [v for row in chunk for v in row],
        )
        changed += cursor.rowcount
    return changed
