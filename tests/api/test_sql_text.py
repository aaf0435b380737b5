"""The SQL spellings that fast statements use for event texts equal Python's."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection

from bugtracker.sql import isoformat_sql, jsonb_object_sql, literal, template_fields, text_sql


def test_templates_become_concatenations_of_quoted_literals_and_expressions():
    assert template_fields("Lease of {holder} expired at {at}.") == ["holder", "at"]
    assert text_sql("Claimed until {at}.", at="x") == "'Claimed until ' || (x) || '.'"
    assert literal("it's 100%") == "'it''s 100%%'"
    with pytest.raises(ValueError):
        text_sql("{n:>3}", n="x")


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("microsecond", [0, 120, 999999])
def test_times_and_texts_read_in_sql_as_in_python(microsecond):
    moment = datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=UTC)
    template = "Lease of {holder} expired at {at} (it's {n}%)."
    expected = template.format(holder="agent-1", at=moment.isoformat(), n=7)
    message = text_sql(template, holder="h", at=isoformat_sql("t"), n="n")
    data = jsonb_object_sql({"holder": "h", "at": isoformat_sql("t"), "n": "n"})
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {message}, {data} FROM (SELECT %s::text AS h, %s::timestamptz AS t, "
            "%s::int AS n) AS x",
            ["agent-1", moment, 7],
        )
        text, obj = cursor.fetchone()
    assert text == expected
    if isinstance(obj, str):
        obj = json.loads(obj)
    assert obj == {"holder": "agent-1", "at": moment.isoformat(), "n": 7}
