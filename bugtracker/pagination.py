"""Keyset (cursor) pagination: stable under concurrent inserts, constant cost per page.

The cursor holds the sort key of the last row served, so a report inserted meanwhile
is neither served twice nor makes the next page skip one. Each ordering ends on the
primary key, which makes the sort key unique.
"""

import base64
import binascii
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param


@dataclass(frozen=True)
class Key:
    name: str
    descending: bool = False
    kind: str = "str"  # "dt", "int", "uuid" or "str"


def _encode_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _decode_value(key: Key, value):
    if value is None:
        raise ValueError("null sort key")
    if key.kind == "dt":
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError("bad datetime")
        return parsed
    if key.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("bad int")
        return value
    if key.kind == "uuid":
        return uuid.UUID(value)
    return str(value)


class KeysetPagination(BasePagination):
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    page_size = 50
    max_page_size = 500

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            raise ValidationError({"page_size": ["A whole number is required."]}) from None
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({"page_size": [f"Must be between 1 and {self.max_page_size}."]})
        return size

    def decode_cursor(self, request, keys):
        raw = request.query_params.get(self.cursor_query_param)
        if not raw:
            return None, False
        try:
            payload = json.loads(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
            values = [_decode_value(k, v) for k, v in zip(keys, payload["v"], strict=True)]
            return values, payload.get("d") == "p"
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None

    def encode_cursor(self, values, reverse: bool) -> str:
        payload = {"v": [_encode_value(v) for v in values], "d": "p" if reverse else "n"}
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    @staticmethod
    def after(keys, values, reverse: bool):
        """Rows strictly after `values` in the order `keys` (before, when reverse).

        When every key sorts the same way this is one row comparison, `(a, b, c) > (x, y, z)`,
        which PostgreSQL answers with a range scan of the ordering's index: a deep page
        costs what the first one does. The expanded OR form below cannot bound the index
        and walks every earlier row (50,000 open reports deep in benchmarks/list.py's
        1,000,000: 189 ms, against 0.1 ms as a row comparison).
        """
        if len({key.descending for key in keys}) == 1:
            greater = keys[0].descending == reverse
            lookup = TupleGreaterThan if greater else TupleLessThan
            return lookup(Tuple(*(F(key.name) for key in keys)), tuple(values))
        condition = Q()
        for index in range(len(keys) - 1, -1, -1):
            key, value = keys[index], values[index]
            greater = key.descending == reverse
            step = Q(**{f"{key.name}__gt" if greater else f"{key.name}__lt": value})
            if index == len(keys) - 1:
                condition = step
            else:
                condition = step | (Q(**{key.name: value}) & condition)
        return condition

    def paginate_queryset(self, queryset, request, view=None):
        keys = view.get_ordering_keys()
        self.keys = keys
        self.request = request
        size = self.get_page_size(request)
        values, reverse = self.decode_cursor(request, keys)
        order = [(F(k.name).desc() if k.descending != reverse else F(k.name).asc()) for k in keys]
        queryset = queryset.order_by(*order)
        if values is not None:
            queryset = queryset.filter(self.after(keys, values, reverse))
        rows = list(queryset[: size + 1])
        has_more = len(rows) > size
        rows = rows[:size]
        if reverse:
            rows.reverse()
        self.has_next = has_more if not reverse else True
        self.has_previous = (values is not None) if not reverse else has_more
        self.first = rows[0] if rows else None
        self.last = rows[-1] if rows else None
        if not rows and values is not None:
            # An empty page past the end still lets the client step back.
            self.has_next = False
        return rows

    def _row_values(self, row):
        values = []
        for key in self.keys:
            value = row
            for part in key.name.split("__"):
                value = getattr(value, part)
            values.append(value)
        return values

    def _link(self, row, reverse: bool):
        url = self.request.build_absolute_uri()
        if row is None:
            return None
        return replace_query_param(
            url, self.cursor_query_param, self.encode_cursor(self._row_values(row), reverse)
        )

    def get_paginated_response(self, data):
        next_url = self._link(self.last, False) if self.has_next and self.last is not None else None
        previous_url = None
        if self.has_previous and self.first is not None:
            previous_url = self._link(self.first, True)
        elif self.has_previous:
            previous_url = remove_query_param(
                self.request.build_absolute_uri(), self.cursor_query_param
            )
        return Response(
            OrderedDict([("results", data), ("next", next_url), ("previous", previous_url)])
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next", "previous"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "Opaque cursor from a previous page's `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"Results per page (default {self.page_size}, max {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
