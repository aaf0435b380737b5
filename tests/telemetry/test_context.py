"""Trace context parsing, request ids, release detection and submission defaults."""

import pytest
from django.test import RequestFactory, override_settings

from telemetry.context import (
    current_release,
    parse_traceparent,
    sane_request_id,
    submission_context,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SHA = "a" * 40


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", TRACE),
        (f"00-{TRACE}-{PARENT}-00", TRACE),
        (f"  00-{TRACE}-{PARENT}-01\t", TRACE),  # optional whitespace around the value
        (f"01-{TRACE}-{PARENT}-01", TRACE),  # a later version is read by its first fields
        (f"cc-{TRACE}-{PARENT}-01-what-the-future-holds", TRACE),
    ],
    ids=["sampled", "not-sampled", "surrounding-whitespace", "version-01", "future-extra-fields"],
)
def test_a_valid_traceparent_gives_its_trace_id(header, expected):
    assert parse_traceparent(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE.upper()}-{PARENT}-01",  # uppercase hex
        f"00-{TRACE}-{PARENT.upper()}-01",
        f"0A-{TRACE}-{PARENT}-01",  # uppercase version
        f"00-{TRACE}-{PARENT}-0A",  # uppercase flags
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # forbidden version
        f"00-{TRACE[:-1]}-{PARENT}-01",  # trace id too short
        f"00-{TRACE}0-{PARENT}-01",  # trace id too long
        f"00-{TRACE}-{PARENT[:-1]}-01",  # parent id too short
        f"00-{TRACE}-{PARENT}-1",  # flags too short
        f"0-{TRACE}-{PARENT}-01",  # version too short
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"01-{TRACE}-{PARENT}-01x",  # later version: extra data must follow a dash
        f"00_{TRACE}_{PARENT}_01",  # wrong separator
        f"00-{TRACE[:-1]}g-{PARENT}-01",  # not hex
        f"00-{TRACE}-{PARENT}",  # missing flags
        f"00-{TRACE}-{PARENT}-01,00-{TRACE}-{PARENT}-01",  # two values folded together
    ],
    ids=[
        "absent",
        "empty",
        "garbage",
        "uppercase-trace-id",
        "uppercase-parent-id",
        "uppercase-version",
        "uppercase-flags",
        "zero-trace-id",
        "zero-parent-id",
        "version-ff",
        "short-trace-id",
        "long-trace-id",
        "short-parent-id",
        "short-flags",
        "short-version",
        "v00-extra-field",
        "future-version-junk",
        "underscores",
        "non-hex",
        "missing-flags",
        "folded-header",
    ],
)
def test_a_malformed_traceparent_is_ignored(header):
    assert parse_traceparent(header) is None


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("req-123", True),
        ("3f2b8c1e-9d7a-4f3e-8b1c-2a5d6e7f8a9b", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        (None, False),
        ("has space", False),
        ("line\nbreak", False),
        ("tab\tin", False),
        ("nul\x00", False),
        ("ünïcode", False),
    ],
)
def test_request_id_is_kept_only_when_sane(value, kept):
    assert sane_request_id(value) == (value if kept else None)


# The release ----------------------------------------------------------------------------


def test_release_sha_setting_is_the_release(tmp_path):
    with override_settings(RELEASE_SHA=" deadbeef "):
        assert current_release() == "deadbeef"


def test_no_release_without_the_setting_even_inside_a_git_checkout(tmp_path):
    # The tracker's own checkout (this test runs inside one) is never taken for a release.
    git = tmp_path / ".git"
    git.mkdir()
    (git / "HEAD").write_text(SHA + "\n")
    with override_settings(RELEASE_SHA="", BASE_DIR=tmp_path):
        assert current_release() is None
        assert submission_context(RequestFactory().post("/api/bug-reports"))["release_sha"] is None


# Submission defaults -------------------------------------------------------------------


@override_settings(RELEASE_SHA="cafe1234")
def test_submission_context_takes_the_ids_set_by_the_middleware():
    request = RequestFactory().post("/api/bug-reports", HTTP_USER_AGENT="probe/1.0")
    request.trace_id, request.request_id = TRACE, "req-1"
    assert submission_context(request) == {
        "trace_id": TRACE,
        "request_id": "req-1",
        "release_sha": "cafe1234",
        "telemetry": {"method": "POST", "path": "/api/bug-reports", "user_agent": "probe/1.0"},
    }


@override_settings(RELEASE_SHA="")
def test_submission_context_reads_headers_when_the_middleware_did_not_run():
    request = RequestFactory().post(
        "/api/bug-reports",
        HTTP_TRACEPARENT=f"00-{TRACE}-{PARENT}-01",
        HTTP_X_REQUEST_ID="from-header",
    )
    ctx = submission_context(request)
    assert (ctx["trace_id"], ctx["request_id"], ctx["release_sha"]) == (TRACE, "from-header", None)
    assert ctx["telemetry"]["user_agent"] == ""


def test_submission_context_always_has_a_request_id():
    request = RequestFactory().post("/api/bug-reports", HTTP_X_REQUEST_ID="bad id with spaces")
    ctx = submission_context(request)
    assert ctx["request_id"] and " " not in ctx["request_id"]
    assert ctx["trace_id"] is None
    assert submission_context(request)["request_id"] == ctx["request_id"]  # stable per request


def test_submission_context_bounds_the_user_agent():
    request = RequestFactory().get("/x", HTTP_USER_AGENT="u" * 5000)
    assert len(submission_context(request)["telemetry"]["user_agent"]) == 500
