"""Property: for any budget from 1,000 to 200,000 characters and any report, however heavy,
the bundle's body never exceeds the budget, trims the lowest sections first, and renders."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports.context import FLOOR, SECTIONS, UNTRUSTED_NOTICE, context_fit

from .big import heavy_report, past_attempts

BUDGETS = st.integers(min_value=1_000, max_value=200_000)
FORMATS = st.sampled_from(["json", "markdown"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


def _long(seed: str, size: int) -> str:
    return (seed or "x") * (size // max(1, len(seed or "x")) + 1)


@st.composite
def heavy_sections(draw):
    """Sections shaped like context_gather's, from tiny to enormous."""
    word = draw(TEXT)
    notes = draw(st.integers(0, 300))
    note_size = draw(st.integers(0, 65_536))
    frames = draw(st.integers(0, 60))
    description = _long(word, draw(st.integers(0, 65_536)))
    return {
        "report": {
            "id": "8f14e45f-ceea-467f-a0b6-4d3f1a2b3c4d",
            "severity": "high",
            "status": "in_progress",
            "component": _long(word, draw(st.integers(0, 200)))[:200],
            "route": _long(word, draw(st.integers(0, 500)))[:500],
            "environment": "production",
            "claim": {"holder": _long(word, 200)[:200], "expires_at": "2026-12-02T08:00:00Z"},
            "sla": {"due_at": "2026-12-02T08:00:00Z", "breached": False},
        },
        "error": {"type": "KeyError", "message": _long(word, draw(st.integers(0, 5000)))},
        "frames": [
            {"path": f"pkg{i}/{word}.py", "function": word or "f", "line": i} for i in range(frames)
        ],
        "attempts": [
            {
                "holder": "worker:h:1",
                "claim_epoch": i,
                "outcome": "failed",
                "note": _long(word, 2000),
                "exit_code": 1,
                "output_tail": _long(word, 300)[:299] + "$",
            }
            for i in range(10)
        ],
        # Only the first 20 notes are ever gathered; the property holds for more too.
        "notes": {
            "total": notes,
            "latest": [
                {
                    "at": "2026-12-02T08:00:00Z",
                    "actor": "a",
                    "kind": "note",
                    "message": _long(word, note_size),
                }
                for _ in range(min(notes, 40))
            ],
        },
        "duplicates": {"occurrences": 1000, "releases": [f"{i:040x}" for i in range(20)]},
        "related": {"same_trace": [{"id": str(i), "status": "new"} for i in range(5)]},
        "telemetry": {"release_sha": "a" * 40, "suspect_range": f"{'b' * 40}..{'a' * 40}"},
        "untrusted": {
            "notice": UNTRUSTED_NOTICE,
            "title": _long(word, 300)[:300],
            "description": description,
            "metadata": {word: _long(word, 16_000)[:16_000]},
            "duplicate_titles": [_long(word, 300)[:300]] * 5,
        },
    }


def assert_trimmed_bottom_up(bundle):
    for upper, name in enumerate(SECTIONS):
        touched = bundle.levels[name] > 0 or name in bundle.dropped
        if touched:
            for lower in SECTIONS[upper + 1 :]:
                assert bundle.levels[lower] == FLOOR or lower in bundle.dropped, (name, lower)
    # Dropped sections are the lowest ones, and never the report.
    assert bundle.dropped == list(reversed(SECTIONS))[: len(bundle.dropped)]
    assert "report" not in bundle.dropped


def assert_renders(bundle, fmt, max_chars):
    assert len(bundle.body) <= max_chars
    if fmt == "json":
        assert json.loads(bundle.body) == bundle.data
        return
    lines = bundle.body.split("\n")
    assert lines[0] == f"# Context for bug report {bundle.data['report_id']}"
    headings = [line[3:] for line in lines if line.startswith("## ")]
    assert headings == [s for s in SECTIONS if s in bundle.data]
    if "untrusted" in headings:
        block = bundle.body[bundle.body.index("## untrusted") :].split("\n")
        fence = block[4][: -len("json")]
        # Opened once, closed once: the reporter's text cannot end the block.
        assert sum(1 for line in block if line.startswith(fence)) == 2


@settings(max_examples=150, deadline=None)
@given(sections=heavy_sections(), max_chars=BUDGETS, fmt=FORMATS)
def test_any_report_any_budget_fits_and_trims_bottom_up(sections, max_chars, fmt):
    bundle = context_fit(sections, max_chars=max_chars, fmt=fmt)
    assert_renders(bundle, fmt, max_chars)
    assert_trimmed_bottom_up(bundle)
    for entry in bundle.data["truncated"]:
        assert entry.split(":")[0] in SECTIONS
    # An output tail is cut from its start: its last character stays.
    assert all(a["output_tail"].endswith("$") for a in bundle.data.get("attempts", []))


@pytest.mark.django_db
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(max_chars=BUDGETS, fmt=FORMATS)
def test_a_heavy_report_through_the_api_never_exceeds_the_budget(
    agent_client, heavy, max_chars, fmt
):
    response = agent_client.get(
        f"/api/bug-reports/{heavy.pk}/context?max_chars={max_chars}&format={fmt}"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert len(body) <= max_chars
    if fmt == "json":
        assert json.loads(body)["report"]["id"] == str(heavy.pk)
    else:
        assert body.startswith(f"# Context for bug report {heavy.pk}")


@pytest.fixture
def heavy(db):
    report = heavy_report(notes=300, duplicates=100, note_size=8000)
    past_attempts(report, 15, size=16_000)
    return report
