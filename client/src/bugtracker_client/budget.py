"""Output budgets: every text an MCP tool returns fits in `max_chars`, trimmed deterministically.

The biggest string or list is halved first, again and again: a string keeps its head and a
marker saying how much was cut, a list its first items and a marker item saying how many
went; `truncated` names what was cut.
A last resort cuts the text itself, so the budget holds whatever the payload.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_CHARS = 12_000
MIN_STRING = 80
CUT_MARKER = "…[{} more characters cut]"
LIST_MARKER = "…[{} more items cut]"


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def fit(value: Any, max_chars: int) -> str:
    """`value` as JSON text of at most `max_chars` characters."""
    text = dumps(value)
    if len(text) <= max_chars:
        return text
    value = json.loads(text)  # a private copy, plain JSON types only
    truncated: list[str] = []
    is_object = isinstance(value, dict)
    for _ in range(500):
        candidate = {**value, "truncated": truncated} if is_object else value
        text = dumps(candidate)
        if len(text) <= max_chars:
            return text
        if not _cut_once(value, truncated, excess=len(text) - max_chars):
            break
    return hard_cut(text, max_chars)


def hard_cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    marker = CUT_MARKER.format(len(text))
    keep = max(0, max_chars - len(marker) - 12)
    marker = CUT_MARKER.format(len(text) - keep)
    return (text[:keep] + marker)[:max_chars]


def _walk(value: Any, path: str):
    """(container, key, path, child) for every string or list below `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if key == "truncated":
            continue
        child_path = f"{path}.{key}" if path else str(key)
        if isinstance(child, str | list):
            yield value, key, child_path, child
        if isinstance(child, dict | list):
            yield from _walk(child, child_path)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(dumps(value))


def _cut_once(value: Any, truncated: list[str], *, excess: int) -> bool:
    candidates = [
        c
        for c in _walk(value, "")
        if (isinstance(c[3], str) and len(_strip_marker(c[3])[0]) > 2 * MIN_STRING)
        or (isinstance(c[3], list) and len([i for i in c[3] if not _is_list_marker(i)]) > 1)
    ]
    if not candidates:
        return False
    container, key, path, child = max(candidates, key=lambda c: (_size(c[3]), c[2]))
    if isinstance(child, str):
        text, already = _strip_marker(child)
        keep = max(MIN_STRING, min(len(text) // 2, len(text) - excess - 40))
        container[key] = text[:keep] + CUT_MARKER.format(already + len(text) - keep)
    else:
        items = [item for item in child if not _is_list_marker(item)]
        cut = len(child) - len(items)
        already = int(child[-1].split("[")[1].split(" ")[0]) if cut else 0
        keep = max(1, len(items) // 2)
        container[key] = [*items[:keep], LIST_MARKER.format(already + len(items) - keep)]
    if path not in truncated:
        truncated.append(path)
    return True


def _strip_marker(text: str) -> tuple[str, int]:
    """`text` without a cut marker it already carries, and how much that marker said was cut."""
    match = _STRING_MARKER.search(text)
    return (text[: match.start()], int(match.group(1))) if match else (text, 0)


_STRING_MARKER = re.compile(r"…\[(\d+) more characters cut\]$")


def _is_list_marker(item: Any) -> bool:
    return isinstance(item, str) and item.startswith("…[") and item.endswith("items cut]")
