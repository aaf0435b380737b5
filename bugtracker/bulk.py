"""Bulk writes for the import, without the ORM's per-value compile step.

`bulk_create` spends most of its time compiling each value of each row through the query
compiler. The import writes tens of thousands of rows of a few fixed shapes, so the values
are converted once per field kind (the same `get_db_prep_save` the ORM uses, only where a
backend needs it) and sent as one prepared statement: `executemany` on SQLite (a C loop
over one prepared statement); on PostgreSQL, COPY for inserts and pipelined prepared
statements for updates.
"""

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC
from functools import lru_cache

from django.db import DEFAULT_DB_ALIAS, connections, models

# Values of these field kinds go to every backend as they are.
_IN_BUCKET = 16
SQLITE_IMPORT_CACHE_KIB = 16 * 1024
_PLAIN = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
)


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
    if value.tzinfo is not None:
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        value = value.replace(tzinfo=None)
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
    column_list = ", ".join(qn(c) for c in columns)
    if connection.vendor == "postgresql":
        copy_sql = f"COPY {qn(table)} ({column_list}) FROM STDIN"
        with _raw_cursor(connection) as cursor, cursor.copy(copy_sql) as copy:
            for row in prepared:
                copy.write_row(row)
        return len(prepared)
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {qn(table)} ({column_list}) VALUES ({placeholders})", prepared
        )
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
    assignments = ", ".join(f"{qn(c)} = %s" for c in columns[:n_set])
    condition = " AND ".join(f"{qn(c)} = %s" for c in columns[n_set:])
    sql = f"UPDATE {qn(table)} SET {assignments} WHERE {condition}"
    if connection.vendor == "postgresql":
        return _pg_update_from_copy(connection, model, names, columns, n_set, prepared)
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)
        return cursor.rowcount


def _pg_update_from_copy(connection, model, names, columns, n_set, prepared) -> int:
    """COPY the new values into a temporary table, then one set-based UPDATE … FROM it."""
    qn = connection.ops.quote_name
    table = model._meta.db_table
    temp = qn(f"legacy_update_{table}")
    types = [model._meta.get_field(name).db_type(connection) for name in names]
    definition = ", ".join(f"c{i} {kind}" for i, kind in enumerate(types))
    assignments = ", ".join(f"{qn(c)} = t.c{i}" for i, c in enumerate(columns[:n_set]))
    condition = " AND ".join(
        f"{qn(table)}.{qn(c)} = t.c{i}" for i, c in enumerate(columns) if i >= n_set
    )
    with _raw_cursor(connection) as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {temp} ({definition}) ON COMMIT DROP")
        with cursor.copy(f"COPY {temp} FROM STDIN") as copy:
            for row in prepared:
                copy.write_row(row)
        cursor.execute(f"UPDATE {qn(table)} SET {assignments} FROM {temp} t WHERE {condition}")
        changed = cursor.rowcount
        cursor.execute(f"DROP TABLE {temp}")
    return changed


def in_list(values: Iterable, *, uuids: bool = False) -> list:
    """`values` for an `__in` filter, padded on SQLite to one of a few fixed lengths.

    Python's sqlite3 keeps the last 128 prepared statements; an IN list of another length
    is another statement, and one with thousands of parameters is big. Over a long import
    that cache would grow with the corpus. Padding (with values that match nothing) keeps
    the number of distinct statements, and so the memory, bounded.
    """
    values = list(dict.fromkeys(values))
    if connections[DEFAULT_DB_ALIAS].vendor != "sqlite" or not values:
        return values
    size = _IN_BUCKET
    while size < len(values):
        size *= 4
    pad = size - len(values)
    if uuids:
        return values + [uuid.UUID(int=n + 1) for n in range(pad)]
    return values + [f"\x1fpad{n}" for n in range(pad)]


@contextmanager
def import_tuning():
    """A larger SQLite page cache while an import runs (its many indexes stay in memory);
    the connection's own setting comes back afterwards. Nothing to do on PostgreSQL."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        before = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(before)}")


@contextmanager
def _raw_cursor(connection):
    """A plain psycopg cursor on Django's connection (same transaction), errors as Django's."""
    # Imported here: only PostgreSQL connections come this way.
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
