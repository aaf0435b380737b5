"""An application that reports with the real sentry-sdk: `python sdk_app.py DSN SCENARIO`.

Run in a subprocess by the ingest tests. Prints one JSON line with what the test needs to
check (trace ids, the text traceback of a captured exception).
"""

import json
import sys
import traceback

import sentry_sdk

RELEASE_SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def load_order(order_id):
    return {"id": order_id}["total"]


def parse_quantity(text):
    return int(text)


def checkout(cart):
    try:
        return load_order(cart)
    except KeyError as exc:
        raise ValueError(f"cart {cart} has no order total") from exc


def capture(fn, *args):
    try:
        fn(*args)
    except Exception:
        sentry_sdk.capture_exception()
        return traceback.format_exc()


def main(dsn: str, scenario: str) -> None:
    options = {"dsn": dsn, "release": RELEASE_SHA, "environment": "production"}
    if scenario == "release_version":
        options.update(release="shop@1.4.2", environment="staging")
    if scenario == "span":
        options["traces_sample_rate"] = 1.0
    if scenario == "pii":
        options["send_default_pii"] = True  # the SDK sends it; the tracker still keeps only the id
    sentry_sdk.init(**options)
    out = {}
    if scenario == "same_bug_twice":
        out["texts"] = [capture(load_order, 17), capture(load_order, 18)]
    elif scenario == "two_bugs":
        out["texts"] = [capture(load_order, 17), capture(parse_quantity, "three")]
    elif scenario == "chained":
        out["texts"] = [capture(checkout, 5)]
    elif scenario == "message":
        sentry_sdk.capture_message("Disk usage at 91% on db-3", level="warning")
    elif scenario == "release_version":
        out["texts"] = [capture(parse_quantity, "x")]
    elif scenario == "span":
        with sentry_sdk.start_transaction(name="checkout", op="task") as transaction:
            with sentry_sdk.start_span(op="db", name="load order"):
                out["texts"] = [capture(load_order, 3)]
            out["trace_id"] = transaction.trace_id
    elif scenario == "pii":
        # What a web framework integration adds: the request, with a query string and cookies.
        sentry_sdk.get_current_scope().add_event_processor(
            lambda event, hint: {
                **event,
                "request": {
                    "url": "https://shop.example/api/orders/12345/items?token=s3cr3t",
                    "method": "POST",
                    "query_string": "token=s3cr3t",
                    "cookies": {"sessionid": "abc"},
                    "headers": {"Authorization": "Bearer xyz"},
                    "env": {"REMOTE_ADDR": "203.0.113.9"},
                },
            }
        )
        sentry_sdk.set_user(
            {"id": "u-42", "email": "alice@example.com", "ip_address": "203.0.113.9"}
        )
        sentry_sdk.set_tag("component", "checkout")
        out["texts"] = [capture(load_order, 99)]
    elif scenario == "text":
        out["texts"] = [capture(parse_quantity, "seven")]
    elif scenario == "burst":
        out["texts"] = [capture(load_order, n) for n in range(5)]
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    sentry_sdk.flush(timeout=20)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
