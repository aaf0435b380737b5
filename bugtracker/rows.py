"""Model instances from rows of hand-written SQL, for the few hot paths that need it.

The ORM's raw() works out the column-to-field mapping and the converters on every call,
which costs more than the statements it runs on the submission and claim paths. Here it is
worked out once per model, column list and database.
"""

from functools import cache

from django.db import connection


def columns(model) -> tuple[str, ...]:
    """The attnames of a model's concrete columns, in a fixed order."""
    return tuple(f.attname for f in model._meta.concrete_fields)


def select_list(model, attnames: tuple[str, ...], alias: str) -> str:
    """`alias.column, …` for `attnames`, in their order."""
    fields = {f.attname: f for f in model._meta.concrete_fields}
    return ", ".join(f"{alias}.{fields[name].column}" for name in attnames)


@cache
def _converters(model, attnames: tuple[str, ...], vendor: str) -> tuple:
    """Django's own from-database conversions (what the compiler applies) for the columns
    that have any: (index, functions, column)."""
    fields = {f.attname: f for f in model._meta.concrete_fields}
    out = []
    for index, name in enumerate(attnames):
        field = fields[name]
        column = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if functions:
            out.append((index, tuple(functions), column))
    return tuple(out)


def from_row(model, attnames: tuple[str, ...], row):
    """An instance of `model` from the first len(attnames) values of `row`."""
    values = list(row[: len(attnames)])
    for index, functions, column in _converters(model, attnames, connection.vendor):
        value = values[index]
        for function in functions:
            value = function(value, column, connection)
        values[index] = value
    return model.from_db(connection.alias, attnames, values)


@cache
def _insert_fields(model) -> tuple:
    return tuple(f for f in model._meta.local_concrete_fields if not f.generated)


@cache
def _column_types(model, vendor: str) -> dict:
    quote = connection.ops.quote_name
    return {quote(f.column): f.db_type(connection) for f in _insert_fields(model)}


def insert_statement(
    obj, expressions: dict[str, str] | None = None, *, gated: bool = False
) -> tuple[str, list]:
    """The INSERT that save(force_insert=True) sends for `obj` (its primary key already set),
    as (SQL, params): the same pre_save and get_db_prep_save per field as the ORM's.
    `expressions` give some columns (by attname) as SQL instead of values; `gated` makes it
    an INSERT … SELECT … FROM lead (a row only when the `lead` relation has one).

    Columns whose value is None are left out (the tables have no database defaults, so
    they are NULL all the same): fewer parameters keep psycopg's cache of parsed statements
    working (it skips statements of more than 50).
    """
    expressions = expressions or {}
    quote = connection.ops.quote_name
    names, values, params = [], [], []
    for field in _insert_fields(type(obj)):
        if field.attname in expressions:
            names.append(quote(field.column))
            values.append(expressions[field.attname])
            continue
        value = field.get_db_prep_save(field.pre_save(obj, True), connection)
        if value is not None:
            names.append(quote(field.column))
            values.append("%s")
            params.append(value)
    table = quote(obj._meta.db_table)
    if gated:
        # Typed like the columns: a parameter in a SELECT list is not typed by its target.
        types = _column_types(type(obj), connection.vendor)
        typed = [f"{v}::{types[n]}" if v == "%s" else v for n, v in zip(names, values, strict=True)]
        sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(typed)} FROM lead"
    else:
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(values)})"
    return sql, params
