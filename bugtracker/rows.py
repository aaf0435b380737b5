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
