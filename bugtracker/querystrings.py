"""Query strings as strict as bodies: the parameters an operation documents in the OpenAPI
schema are the ones it takes.

The schema is the one description: what `/api/schema` tells a client an operation accepts
is what `StrictQueryMiddleware` lets through. An unknown parameter (`?staus=`) is a 400
problem naming it, never a silently unfiltered list. A parameter given more than once is
accepted only where the schema says it takes a list (an `array`): there it means any of its
values, like a comma list (the filters read every value); elsewhere it is a 400.

Paths the schema does not describe (the schema and docs pages themselves) are left alone.
The schema is built once per process, on the first request that needs it.
"""

import re
import threading
from dataclasses import dataclass

from .errors import problem_response

# Parameters any URL may carry besides those documented: none.
ALWAYS_ALLOWED: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Operation:
    params: frozenset[str]
    lists: frozenset[str]


_lock = threading.Lock()
_table: list[tuple[re.Pattern, dict[str, Operation]]] | None = None


def _path_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", template.rstrip("/"))
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}/?$")


def operations_table(schema: dict) -> list[tuple[re.Pattern, dict[str, Operation]]]:
    """(path regex, {method: Operation}) from an OpenAPI document; literal paths first, so
    `/bug-reports/summary` is not read as `/bug-reports/{id}`."""
    table = []
    for template, methods in schema.get("paths", {}).items():
        by_method = {}
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
            by_method[method.upper()] = Operation(
                params=frozenset(p["name"] for p in query),
                lists=frozenset(
                    p["name"] for p in query if p.get("schema", {}).get("type") == "array"
                ),
            )
        table.append((template.count("{"), _path_regex(template), by_method))
    table.sort(key=lambda row: row[0])
    return [(regex, by_method) for _, regex, by_method in table]


def _operations() -> list[tuple[re.Pattern, dict[str, Operation]]]:
    global _table
    if _table is None:
        with _lock:
            if _table is None:
                # Imported here: building the schema imports every app's views, which the
                # middleware module must not do at import time (settings load it first).
                from drf_spectacular.generators import SchemaGenerator

                _table = operations_table(SchemaGenerator().get_schema(request=None, public=True))
    return _table


def operation_for(path: str, method: str) -> Operation | None:
    for regex, by_method in _operations():
        if regex.match(path):
            return by_method.get("GET" if method == "HEAD" else method)
    return None


def query_problems(query, operation: Operation) -> dict[str, list[str]]:
    """Field → messages for what `query` (a QueryDict) carries that `operation` does not take."""
    errors: dict[str, list[str]] = {}
    allowed = operation.params | ALWAYS_ALLOWED
    for name in query:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            errors[name] = [f"Unknown query parameter {name!r}; this call takes: {known}."]
        elif len(query.getlist(name)) > 1 and name not in operation.lists:
            errors[name] = [f"{name!r} takes one value; it was given more than once."]
    return errors


class StrictQueryMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.GET and request.path.startswith("/api/"):
            operation = operation_for(request.path, request.method)
            if operation is not None:
                errors = query_problems(request.GET, operation)
                if errors:
                    names = ", ".join(errors)
                    return problem_response(
                        400,
                        f"Invalid query string: {names}.",
                        slug="validation-error",
                        errors=errors,
                    )
        return self.get_response(request)
