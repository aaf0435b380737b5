"""Real-shaped reports for the context tests: long Python tracebacks, notes, duplicates."""

from tests.factories import make_report

LIBRARY = (
    '  File "/usr/local/lib/python3.12/site-packages/django/core/handlers/base.py", line 197, '
    "in _get_response\n    response = wrapped_callback(request, *callback_args, **callback_kwargs)\n"
)


def huge_trace(n: int, *, size: int = 200 * 1024, exc: str = "KeyError") -> str:
    """A traceback of about `size` characters: a deep recursion in app code under library
    frames, the way a runaway serializer looks in production."""
    head = "Traceback (most recent call last):\n" + LIBRARY
    frame = (
        f'  File "/srv/app/billing{n}/invoice.py", line {40 + n % 50}, in total_{n}\n'
        f"    return sum(line.amount for line in self.lines) + total_{n}(parent)\n"
    )
    inner = (
        f'  File "/srv/app/billing{n}/models.py", line 12, in amount\n'
        f"    return self.prices[self.sku]\n"
    )
    tail = f"{exc}: 'sku-{n}-missing'\n"
    repeats = max(1, (size - len(head) - len(inner) - len(tail)) // len(frame))
    return head + frame * repeats + inner + tail


def real_report(n: int, **fields):
    data = {
        "title": f"{'KeyError'} in billing{n}.invoice.total: 'sku-{n}-missing' on checkout",
        "description": "Checkout fails for customers with a discontinued SKU. " * 40,
        "severity": ["critical", "high", "medium", "low"][n % 4],
        "category": "crash",
        "component": f"billing{n}",
        "route": f"/api/checkout/{n}",
        "environment": "production",
        "stack_trace": huge_trace(n),
        "metadata": {"browser": "Firefox 131", "customer_tier": "gold", "note": "x" * 500},
    }
    data.update(fields)
    return make_report(**data)
