"""SQL spellings of Python values, for the statements that build event texts in the database.

A fast statement that writes an event must write the very text the ORM path writes. Rather
than restating a message in SQL, the statement renders the same template (`text_sql`) with
SQL expressions in its fields, and spells times as `datetime.isoformat()` does
(`isoformat_sql`). `tests/api/test_sql_text.py` holds both spellings equal.
"""

import string

_FORMATTER = string.Formatter()


def literal(text: str) -> str:
    """`text` as an SQL string literal, safe inside a statement that also takes %s params."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def isoformat_sql(expression: str) -> str:
    """SQL text of `expression` (a timestamptz) as Python's `datetime.isoformat()` spells
    the same instant in UTC: microseconds only when there are any."""
    utc = f"({expression} AT TIME ZONE 'UTC')"
    return (
        f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') """
        f"|| CASE WHEN mod(date_part('microseconds', {utc})::bigint, 1000000) = 0 THEN '' "
        f"ELSE to_char({utc}, '.US') END || '+00:00'"
    )


def template_fields(template: str) -> list[str]:
    """The `{name}` fields of a str.format template, in order."""
    return [name for _, name, _, _ in _FORMATTER.parse(template) if name is not None]


def text_sql(template: str, **expressions: str) -> str:
    """The SQL expression that makes `template.format(...)` from SQL text `expressions`:
    `'Claimed until ' || (expr) || '.'`. Every field must be given; no format specs."""
    parts = []
    for text, name, spec, conversion in _FORMATTER.parse(template):
        if text:
            parts.append(literal(text))
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{template!r}: no format spec or conversion in an SQL template")
        parts.append(f"({expressions[name]})")
    return " || ".join(parts) or "''"


def jsonb_object_sql(data: dict[str, str]) -> str:
    """`jsonb_build_object(...)` of SQL expressions under `data`'s keys, in its order."""
    pairs = ", ".join(f"{literal(key)}, {value}" for key, value in data.items())
    return f"jsonb_build_object({pairs})"
