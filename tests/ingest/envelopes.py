"""Envelopes built by hand for the tests that need exact bytes (the SDK's own are in test_sdk)."""

import json
import uuid


def event_payload(**fields) -> dict:
    event = {
        "event_id": uuid.uuid4().hex,
        "level": "error",
        "platform": "python",
        "exception": {
            "values": [
                {
                    "type": "ZeroDivisionError",
                    "value": "division by zero",
                    "module": "builtins",
                    "stacktrace": {
                        "frames": [
                            {
                                "abs_path": "/srv/app/shop/views.py",
                                "function": "total",
                                "lineno": 12,
                            },
                            {
                                "abs_path": "/srv/app/shop/maths.py",
                                "function": "ratio",
                                "lineno": 3,
                            },
                        ]
                    },
                }
            ]
        },
    }
    event.update(fields)
    return event


def envelope(*items: tuple[dict, bytes], header: dict | None = None) -> bytes:
    """An envelope of (item header, payload) pairs; `length` is set unless the header has one."""
    lines = [json.dumps(header or {}).encode()]
    for item_header, payload in items:
        item_header = {"length": len(payload), **item_header}
        lines += [json.dumps(item_header).encode(), payload]
    return b"\n".join(lines) + b"\n"


def event_envelope(event: dict | None = None, **fields) -> bytes:
    event = event or event_payload(**fields)
    return envelope(
        ({"type": "event"}, json.dumps(event).encode()), header={"event_id": event["event_id"]}
    )
