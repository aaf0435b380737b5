"""The normaliser on real-shaped tracebacks and messages: what makes two reports one bug."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
from django.conf import settings

from dedup.fingerprint import (
    FINGERPRINT_VERSION,
    fingerprint_for,
    last_exception_type,
    mask_message,
    parse_traceback,
    repo_hints,
    template_route,
)

SAMPLE = Path(settings.BASE_DIR) / "tests" / "fixtures" / "legacy-sample"

FLASK_TRACE = """Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.12/site-packages/flask/app.py", line 1473, in wsgi_app
    response = self.full_dispatch_request()
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/.venv/lib/python3.12/site-packages/flask/app.py", line 882, in full_dispatch_request
    rv = self.handle_user_exception(e)
  File "/srv/app/server/views/images.py", line 88, in get_image
    image = storage.load(image_id)
  File "/srv/app/server/storage.py", line 41, in load
    return self._decode(blob)
  File "/usr/lib/python3.12/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
  File "<frozen importlib._bootstrap>", line 488, in _call_with_frames_removed
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)
"""

CHAINED_TRACE = """Traceback (most recent call last):
  File "/app/billing/invoice.py", line 64, in parse_amount
    return int(raw)
ValueError: invalid literal for int() with base 10: 'abc'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/server/app.py", line 108, in dispatch
    return handler(request)
  File "/app/billing/invoice.py", line 70, in parse_amount
    raise InvoiceError(f"bad amount {raw!r}") from None
billing.errors.InvoiceError: bad amount 'abc'
"""

CAUSED_TRACE = CHAINED_TRACE.replace(
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)

LIBRARY_ONLY_TRACE = """Traceback (most recent call last):
  File "/usr/local/lib/python3.11/threading.py", line 1045, in _bootstrap_inner
    self.run()
  File "/usr/local/lib/python3.11/site-packages/urllib3/connectionpool.py", line 790, in urlopen
    response = self._make_request(
  File "/usr/lib/python3/dist-packages/requests/adapters.py", line 519, in send
    raise ConnectionError(e, request=request)
requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.example.com', port=443)
"""


def fp(**fields):
    data = {"title": "Something broke", "stack_trace": "", "component": None, "route": None}
    data.update(fields)
    return fingerprint_for(**data)


def legacy_reports():
    """(expected error, report dict) for every sample report with a traceback."""
    expected = {
        r["legacy_id"]: r for r in json.loads((SAMPLE / "expected.json").read_text())["reports"]
    }
    found = {}
    for path in sorted((SAMPLE / "reports").rglob("*.json*")):
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        try:
            objects = (
                [json.loads(line) for line in text.splitlines() if line.strip()]
                if path.suffix == ".jsonl"
                else json.loads(text)
            )
        except ValueError:
            continue
        for report in objects if isinstance(objects, list) else [objects]:
            if isinstance(report, dict) and report.get("id") in expected:
                found.setdefault(report["id"], (expected[report["id"]], report))
    return list(found.values())


# Tracebacks ---------------------------------------------------------------------------


def test_library_frames_and_the_standard_library_are_left_out():
    result = fp(stack_trace=FLASK_TRACE)
    assert result.inputs["kind"] == "stack_trace"
    assert result.inputs["exception_types"] == ["json.decoder.JSONDecodeError"]
    assert result.inputs["frames"] == [
        "server/views/images.py:get_image",
        "app/server/storage.py:load",
    ]


def test_line_numbers_and_the_message_never_change_the_fingerprint():
    moved = FLASK_TRACE.replace("line 88", "line 95").replace("line 41", "line 40")
    other_message = FLASK_TRACE.replace("line 1 column 1 (char 0)", "line 7 column 3 (char 88)")
    assert fp(stack_trace=FLASK_TRACE).hex == fp(stack_trace=moved).hex
    assert fp(stack_trace=FLASK_TRACE).hex == fp(stack_trace=other_message).hex


def test_library_versions_and_deployment_roots_do_not_split_a_bug():
    upgraded = FLASK_TRACE.replace(
        "python3.12/site-packages/flask/app.py", "python3.13/site-packages/flask/app.py"
    )
    redeployed = FLASK_TRACE.replace("/srv/app/", "/home/deploy/releases/42/srv/app/")
    assert fp(stack_trace=upgraded).hex == fp(stack_trace=FLASK_TRACE).hex
    assert fp(stack_trace=redeployed).hex == fp(stack_trace=FLASK_TRACE).hex


def test_another_in_app_function_or_exception_type_is_another_bug():
    other_function = FLASK_TRACE.replace("in load", "in load_thumbnail")
    other_type = FLASK_TRACE.replace("json.decoder.JSONDecodeError", "UnicodeDecodeError")
    assert fp(stack_trace=other_function).hex != fp(stack_trace=FLASK_TRACE).hex
    assert fp(stack_trace=other_type).hex != fp(stack_trace=FLASK_TRACE).hex


def test_every_exception_of_a_chain_counts():
    blocks = parse_traceback(CHAINED_TRACE)
    assert [b.exc_type for b in blocks] == ["ValueError", "billing.errors.InvoiceError"]
    result = fp(stack_trace=CHAINED_TRACE)
    assert result.inputs["exception_types"] == ["ValueError", "billing.errors.InvoiceError"]
    assert result.inputs["frames"] == [
        "app/billing/invoice.py:parse_amount",
        "app/server/app.py:dispatch",
        "app/billing/invoice.py:parse_amount",
    ]
    # Only the outer exception: a different chain, a different bug.
    outer_only = CHAINED_TRACE.split("During handling")[1].split("\n", 2)[2]
    assert fp(stack_trace=outer_only).hex != result.hex
    assert [b.exc_type for b in parse_traceback(CAUSED_TRACE)] == [
        "ValueError",
        "billing.errors.InvoiceError",
    ]


def test_with_no_in_app_frame_every_frame_counts():
    result = fp(stack_trace=LIBRARY_ONLY_TRACE)
    assert result.inputs["frames"] == [
        "lib/python3.11/threading.py:_bootstrap_inner",
        "site-packages/urllib3/connectionpool.py:urlopen",
        "dist-packages/requests/adapters.py:send",
    ]
    assert result.inputs["exception_types"] == ["requests.exceptions.ConnectionError"]
    assert repo_hints(LIBRARY_ONLY_TRACE) == []


def test_deeper_recursion_is_the_same_bug():
    frame = '  File "/app/tree.py", line 12, in walk\n    return walk(node.child)\n'
    shallow = f"Traceback (most recent call last):\n{frame * 3}RecursionError: maximum recursion depth exceeded\n"
    deep = f"Traceback (most recent call last):\n{frame * 40}RecursionError: maximum recursion depth exceeded\n"
    assert fp(stack_trace=shallow).hex == fp(stack_trace=deep).hex


def test_windows_line_endings_and_exception_groups_parse():
    assert fp(stack_trace=FLASK_TRACE.replace("\n", "\r\n")).hex == fp(stack_trace=FLASK_TRACE).hex
    group = """  + Exception Group Traceback (most recent call last):
  |   File "/app/jobs/batch.py", line 30, in run_all
  |     async with asyncio.TaskGroup() as tg:
  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/app/jobs/batch.py", line 12, in one
    |     raise KeyError(job_id)
    | KeyError: 'job-42'
    +------------------------------------
"""
    blocks = parse_traceback(group)
    assert [(b.exc_type, [f[1] for f in b.frames]) for b in blocks] == [
        ("ExceptionGroup", ["run_all"]),
        ("KeyError", ["one"]),
    ]


def test_repo_hints_are_in_app_paths_innermost_first():
    assert repo_hints(FLASK_TRACE) == [
        "/srv/app/server/storage.py",
        "/srv/app/server/views/images.py",
    ]
    assert repo_hints(CHAINED_TRACE) == ["/app/billing/invoice.py", "/app/server/app.py"]
    assert repo_hints("") == []
    assert repo_hints("not a traceback at all") == []


def test_the_legacy_samples_tracebacks_group_by_error_and_never_across_errors():
    by_error: dict = defaultdict(set)
    for expected, report in legacy_reports():
        trace = report.get("stack_trace") or report.get("traceback")
        if not trace:
            continue
        result = fp(stack_trace=trace, title=report["title"])
        assert result.inputs["kind"] == "stack_trace"
        assert not any("site-packages" in f for f in result.inputs["frames"])
        by_error[expected["error"]].add(result.hex)
    assert len(by_error) == 6
    assert all(len(hexes) == 1 for hexes in by_error.values()), by_error
    assert len(set().union(*by_error.values())) == 6


def test_the_last_exception_type_is_the_parsed_last_blocks():
    """last_exception_type skips reading the frames; it must answer as parse_traceback."""
    traces = [FLASK_TRACE, CHAINED_TRACE, CAUSED_TRACE, LIBRARY_ONLY_TRACE, "", "no trace"]
    traces.append(CHAINED_TRACE.replace("\n", "\r\n"))
    traces.append(CHAINED_TRACE + "Traceback (most recent call last):\n  (no frames)\n")
    traces.append(FLASK_TRACE.rsplit("\n", 2)[0])  # cut before its exception line
    traces += [r.get("stack_trace") or r.get("traceback") or "" for _, r in legacy_reports()]
    for trace in traces:
        blocks = parse_traceback(trace)
        assert last_exception_type(trace) == (blocks[-1].exc_type if blocks else None)
    assert last_exception_type(CHAINED_TRACE) == "billing.errors.InvoiceError"


# Without a trace ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("ValueError in parse_amount (report 251)", "ValueError in parse_amount (report {n})"),
        ("Image 123e4567-e89b-12d3-a456-426614174000 not found", "Image {uuid} not found"),
        ("Object at 0x7f3a9c2e1b40 leaked", "Object at {hex} leaked"),
        ("Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 broke it", "Commit {hex} broke it"),
        ("No user 'alice' in group \"admins\"", "No user {str} in group {str}"),
        ("Mail to bob.smith+x@example.co.uk bounced", "Mail to {email} bounced"),
        ("GET https://api.example.com/v1/items?id=7 failed", "GET {url} failed"),
        ("Connect to 10.0.3.17:5432 refused", "Connect to {ip} refused"),
        ("Connect to fe80::1ff:fe23:4567:890a refused", "Connect to {ip} refused"),
        ("Bind [::1]:8080 failed", "Bind [{ip}]:{n} failed"),
        ("Error::Fatal in cafe:bad", "Error::Fatal in cafe:bad"),
        ("Upstream model timed out after 30s", "Upstream model timed out after {duration}"),
        ("Job took 1.5 ms, then 200 ms", "Job took {duration}, then {duration}"),
        ("Token tok_a8d9f0b1c2d3e4f5g6 expired", "Token {hash} expired"),
        ("Deadline 2025-06-01T10:23:00Z passed", "Deadline {time} passed"),
        ("Can't decode utf8 base64 payload", "Can't decode utf8 base64 payload"),
    ],
)
def test_variable_parts_of_a_title_are_masked(message, masked):
    assert mask_message(message) == masked


def test_titles_differing_only_in_ids_are_one_bug_and_other_words_are_not():
    a = fp(title="PermissionError: user 4017 may not access image 9017", component="auth")
    b = fp(title="PermissionError: user 18 may not access image 3", component="auth")
    c = fp(title="PermissionError: user 18 may not delete image 3", component="auth")
    assert a.inputs["kind"] == "message"
    assert a.hex == b.hex
    assert a.hex != c.hex


@pytest.mark.parametrize(
    ("route", "templated"),
    [
        ("/api/images/123", "/api/images/{id}"),
        ("/api/images/{id}", "/api/images/{id}"),
        ("/api/images/123/", "/api/images/{id}"),
        ("/api/users/7f1c2a44-1d3b-4c8e-9a55-0b9c1d2e3f40/avatar", "/api/users/{id}/avatar"),
        ("/files/5f2b9c3d4e5f6a7b?download=1#top", "/files/{id}"),
        ("https://shop.example.com/orders/br-1690000037-0001", "/orders/{id}"),
        ("/users/<int:pk>/posts/:slug", "/users/{id}/posts/{id}"),
        ("/api/v2/oauth2/token", "/api/v2/oauth2/token"),
        ("/", "/"),
        ("", ""),
        (None, ""),
    ],
)
def test_ids_in_routes_are_templated(route, templated):
    assert template_route(route) == templated


def test_component_and_route_are_part_of_the_fingerprint():
    base = fp(stack_trace=FLASK_TRACE, component="images", route="/api/images/1")
    assert base.hex == fp(stack_trace=FLASK_TRACE, component="Images ", route="/api/images/2").hex
    assert base.hex != fp(stack_trace=FLASK_TRACE, component="billing", route="/api/images/1").hex
    assert base.hex != fp(stack_trace=FLASK_TRACE, component="images", route="/api/videos/1").hex
    assert base.inputs["route"] == "/api/images/{id}"


def test_trace_request_and_release_ids_never_enter_a_fingerprint():
    traced = (
        f"{FLASK_TRACE}trace_id=4bf92f3577b34da6a3ce929d0e0e4736 request_id=abc release=9fceb02\n"
    )
    assert fp(stack_trace=traced).hex == fp(stack_trace=FLASK_TRACE).hex
    assert "trace_id" not in fingerprint_for.__kwdefaults__
    with pytest.raises(TypeError):
        fingerprint_for(title="x", stack_trace="", component=None, route=None, trace_id="t")


# Client overrides and the version ------------------------------------------------------------


def test_a_client_fingerprint_overrides_and_default_stands_for_the_computed_one():
    default = fp(stack_trace=FLASK_TRACE)
    custom = fp(stack_trace=FLASK_TRACE, client_fingerprint=["tenant-a", "image-decode"])
    assert custom.hex != default.hex
    assert custom.inputs == {"kind": "client", "client": ["tenant-a", "image-decode"]}
    other_trace_same_override = fp(title="Other", client_fingerprint=["tenant-a", "image-decode"])
    assert other_trace_same_override.hex == custom.hex

    with_default = fp(stack_trace=FLASK_TRACE, client_fingerprint=["{{ default }}", "tenant-a"])
    assert with_default.hex not in (default.hex, custom.hex)
    assert with_default.inputs["default"] == default.inputs
    assert fp(stack_trace=FLASK_TRACE, client_fingerprint=["{{default}}"]).hex == default.hex
    assert fp(stack_trace=FLASK_TRACE, client_fingerprint=[]).hex == default.hex


def test_the_algorithm_version_comes_with_every_fingerprint():
    assert fp().version == FINGERPRINT_VERSION
    assert fp(stack_trace=FLASK_TRACE).version == FINGERPRINT_VERSION
    assert len(fp().hex) == 64
