"""The traceback text an event makes reads back as exactly the parts the fingerprint uses."""

import pytest

from dedup.fingerprint import default_fingerprint, parse_traceback
from ingest.mapping import exception_blocks, map_event, render_traceback

FRAMES = [
    {
        "abs_path": "/usr/lib/python3.12/site-packages/django/core/handlers/base.py",
        "function": "get_response",
        "lineno": 197,
    },
    {
        "abs_path": "/srv/app/shop/views.py",
        "function": "checkout",
        "lineno": 40,
        "context_line": "    total = order.total()",
    },
    {"filename": "shop/models.py", "function": "total", "lineno": 7},
]
TRICKY = [
    # Quotes and newlines in a path or function, no line number, a module-qualified type, a
    # message quoting a traceback, a source line that looks like a frame.
    {"abs_path": 'C:\\app\\we"ird.py', "function": "f\nx"},
    {
        "abs_path": "/srv/app/x.py",
        "function": "g",
        "lineno": 3,
        "context_line": 'log("File \\"a.py\\", line 1, in b")',
    },
]


@pytest.mark.parametrize(
    "exceptions",
    [
        [{"type": "KeyError", "value": "'total'", "stacktrace": {"frames": FRAMES}}],
        [
            {"type": "KeyError", "value": "'a'", "stacktrace": {"frames": FRAMES[:2]}},
            {
                "type": "Conflict",
                "module": "shop.errors",
                "value": 'see\nTraceback (most recent call last):\n  File "z.py", line 1, in q',
                "stacktrace": {"frames": TRICKY},
            },
        ],
        [
            {"type": "ValueError", "value": "no frames"},
            {"type": "Boom<T>", "module": "builtins", "stacktrace": {"frames": FRAMES}},
        ],
    ],
)
def test_the_text_reads_back_as_the_structured_parts(exceptions):
    assert parse_traceback(render_traceback(exceptions)) == exception_blocks(exceptions)


def test_a_module_qualified_type_prints_as_python_prints_it():
    (block,) = exception_blocks(
        [{"type": "Conflict", "module": "shop.errors", "stacktrace": {"frames": FRAMES}}]
    )
    assert block.exc_type == "shop.errors.Conflict"


def test_a_deep_recursion_is_shortened_to_fit_and_keeps_its_fingerprint():
    PATH = "/srv/app/" + "deep/" * 20 + "tree.py"
    frames = [
        {"abs_path": PATH, "function": "walk", "lineno": n, "context_line": "x" * 300}
        for n in range(5000)
    ]
    exceptions = [
        {
            "type": "RecursionError",
            "value": "maximum recursion depth exceeded",
            "stacktrace": {"frames": frames},
        }
    ]
    text = render_traceback(exceptions)
    assert len(text) <= 256 * 1024 and "frames left out" in text
    full = default_fingerprint(
        title="",
        stack_trace="\n".join(
            [
                "Traceback (most recent call last):",
                *[f'  File "{PATH}", line {n}, in walk' for n in range(5000)],
                "RecursionError: x",
            ]
        ),
        component=None,
        route=None,
    )
    assert (
        default_fingerprint(title="", stack_trace=text, component=None, route=None).hex == full.hex
    )


def test_request_url_becomes_a_templated_route():
    import uuid

    event = {
        "request": {
            "url": "https://shop.example/api/orders/8f14e45f-ceea-467f-a0e6-0c1f1d2a7b11/pay?x=1",
            "method": "post",
        }
    }
    mapped = map_event(event, event_id=uuid.uuid4(), keep_pii=False)
    assert mapped.data["route"] == "/api/orders/{id}/pay"
    assert mapped.data["telemetry"]["request"]["method"] == "POST"
