"""Trace context parsing, request ids, release detection and submission defaults."""

import pytest
from django.test import RequestFactory, override_settings

from telemetry import context
from telemetry.context import (
    current_release,
    parse_traceparent,
    read_git_commit,
    sane_request_id,
    submission_context,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SHA = "a" * 40
OTHER_SHA = "b" * 40


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


# Release detection ------------------------------------------------------------------------


def _repo(tmp_path, head: str, refs: dict[str, str] | None = None, packed: str | None = None):
    git = tmp_path / ".git"
    git.mkdir(parents=True)
    (git / "HEAD").write_text(head + "\n")
    for name, sha in (refs or {}).items():
        ref_file = git / name
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(sha + "\n")
    if packed is not None:
        (git / "packed-refs").write_text(packed)
    return tmp_path


def test_git_commit_from_a_branch_ref(tmp_path):
    base = _repo(tmp_path, "ref: refs/heads/main", {"refs/heads/main": SHA})
    assert read_git_commit(base) == SHA


def test_git_commit_from_packed_refs(tmp_path):
    packed = (
        "# pack-refs with: peeled fully-peeled sorted\n"
        f"{OTHER_SHA} refs/heads/other\n"
        f"{SHA} refs/heads/main\n"
        f"^{OTHER_SHA}\n"
    )
    base = _repo(tmp_path, "ref: refs/heads/main", packed=packed)
    assert read_git_commit(base) == SHA


def test_loose_ref_wins_over_packed_ref(tmp_path):
    base = _repo(
        tmp_path,
        "ref: refs/heads/main",
        {"refs/heads/main": SHA},
        packed=f"{OTHER_SHA} refs/heads/main\n",
    )
    assert read_git_commit(base) == SHA


def test_git_commit_from_a_detached_head(tmp_path):
    assert read_git_commit(_repo(tmp_path, SHA.upper())) == SHA


def test_git_commit_in_a_linked_worktree(tmp_path):
    main = _repo(tmp_path / "main", "ref: refs/heads/main", {"refs/heads/feature": SHA})
    worktree_git = main / ".git" / "worktrees" / "wt"
    worktree_git.mkdir(parents=True)
    (worktree_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (worktree_git / "commondir").write_text("../..\n")
    checkout = tmp_path / "wt"
    checkout.mkdir()
    (checkout / ".git").write_text(f"gitdir: {worktree_git}\n")
    assert read_git_commit(checkout) == SHA


@pytest.mark.parametrize(
    "head",
    ["ref: refs/heads/missing", "not a sha", "ref: ../../etc/passwd", ""],
)
def test_no_git_commit_when_head_leads_nowhere(tmp_path, head):
    assert read_git_commit(_repo(tmp_path, head)) is None


def test_no_git_commit_without_a_repository(tmp_path):
    assert read_git_commit(tmp_path) is None


@pytest.fixture
def fresh_release_cache():
    context.deployed_commit.cache_clear()
    yield
    context.deployed_commit.cache_clear()


def test_release_sha_setting_comes_first(tmp_path, fresh_release_cache):
    base = _repo(tmp_path, SHA)
    with override_settings(RELEASE_SHA=" deadbeef ", BASE_DIR=base):
        assert current_release() == "deadbeef"


def test_release_falls_back_to_the_deployed_git_commit(tmp_path, fresh_release_cache):
    base = _repo(tmp_path, "ref: refs/heads/main", {"refs/heads/main": SHA})
    with override_settings(RELEASE_SHA="", BASE_DIR=base):
        assert current_release() == SHA


def test_release_is_none_without_setting_or_repository(tmp_path, fresh_release_cache):
    with override_settings(RELEASE_SHA="", BASE_DIR=tmp_path):
        assert current_release() is None


def test_git_commit_is_read_once_per_process(tmp_path, fresh_release_cache):
    base = _repo(tmp_path, SHA)
    with override_settings(RELEASE_SHA="", BASE_DIR=base):
        assert current_release() == SHA
        (base / ".git" / "HEAD").write_text(OTHER_SHA)  # a checkout after start-up
        assert current_release() == SHA


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
def test_submission_context_reads_headers_when_the_middleware_did_not_run(fresh_release_cache):
    with override_settings(BASE_DIR="/nonexistent"):
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
