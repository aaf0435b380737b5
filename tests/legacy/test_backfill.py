"""backfill_json on the real-shaped legacy sample, and on corpora made up here."""

import json
import shutil
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from dedup.models import DedupGroup
from legacy.backfill import Backfill
from reports.models import BugReport, BugReportEvent

pytestmark = pytest.mark.django_db

SAMPLE = Path(settings.BASE_DIR) / "tests" / "fixtures" / "legacy-sample"
EXPECTED = json.loads((SAMPLE / "expected.json").read_text())


def backfill(*args, expect_exit: int = 0) -> str:
    out = StringIO()
    if expect_exit:
        with pytest.raises(SystemExit) as exit_info:
            call_command("backfill_json", *map(str, args), stdout=out)
        assert exit_info.value.code == expect_exit
    else:
        call_command("backfill_json", *map(str, args), stdout=out)
    return out.getvalue()


def summary_numbers(output: str) -> dict[str, str]:
    lines = output.split("Summary:", 1)[1].splitlines()
    numbers = {}
    for line in lines[1:]:
        if not line.startswith("  ") or ":" not in line:
            break
        label, value = line.strip().split(":", 1)
        numbers[label] = value.strip()
    return numbers


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def legacy(ident: str, **fields) -> dict:
    report = {
        "id": ident,
        "title": f"Report {ident}",
        "status": "open",
        "created_at": "2025-07-01T10:00:00Z",
    }
    report.update(fields)
    return report


@pytest.fixture
def sample_copy(tmp_path) -> Path:
    target = tmp_path / "legacy"
    shutil.copytree(SAMPLE / "reports", target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_the_sample_imports_to_exactly_the_expected_result():
    output = backfill(SAMPLE / "reports", expect_exit=1)

    assert BugReport.objects.count() == EXPECTED["valid_reports"]
    assert Counter(BugReport.objects.values_list("status", flat=True)) == EXPECTED["by_status"]
    assert Counter(BugReport.objects.values_list("severity", flat=True)) == EXPECTED["by_severity"]
    assert BugReportEvent.objects.filter(kind="note").count() == EXPECTED["notes"]
    assert BugReportEvent.objects.filter(kind="imported").count() == EXPECTED["valid_reports"]

    rows = {r.legacy_id: r for r in BugReport.objects.all()}
    notes = Counter(
        BugReportEvent.objects.filter(kind="note").values_list("report__legacy_id", flat=True)
    )
    for expected in EXPECTED["reports"]:
        row = rows[expected["legacy_id"]]
        assert (row.status, row.severity, row.title) == (
            expected["status"],
            expected["severity"],
            expected["title"],
        ), expected["legacy_id"]
        assert (row.component, row.route, row.trace_id) == (
            expected["component"],
            expected["route"],
            expected["trace_id"],
        ), expected["legacy_id"]
        assert notes[expected["legacy_id"]] == expected["notes"], expected["legacy_id"]

    numbers = summary_numbers(output)
    assert numbers["read"] == "306"
    assert numbers["inserted"] == "300"
    assert numbers["already present"] == "1"  # copy-of-0fef7928…: the same report again
    assert numbers["conflicts"] == "0"
    assert numbers["invalid"] == str(len(EXPECTED["bad_files"]))
    invalid_section = output.split("Invalid (5):", 1)[1]
    for bad in EXPECTED["bad_files"]:
        assert bad["file"] in invalid_section
    reasons = {
        line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1]
        for line in invalid_section.strip().splitlines()
    }
    assert reasons["bad-empty-1.json"] == "empty file"
    assert reasons["bad-truncated-0.json"].startswith("truncated JSON")
    assert reasons["bad-garbage-2.json"].startswith("not valid JSON")
    assert reasons["bad-no_title-3.json"] == "no title"
    assert reasons["bad-title_not_string-4.json"].startswith("title is not a string")


def test_imported_reports_keep_their_timestamps_history_and_unknown_keys():
    backfill(SAMPLE / "reports", expect_exit=1)

    # 2025/10/… holds a nested file; this one is at the top with epoch-ms notes and a commit.
    report = BugReport.objects.get(legacy_id="f09f5791-6685-b4b8-bdd1-04d74db1df93")
    assert report.created_at.isoformat() == "2025-08-11T08:30:00+00:00"
    assert report.resolved_at.isoformat() == "2025-08-12T08:30:00+00:00"  # +02:00 in the file
    assert report.sla_due_at.isoformat() == "2025-08-12T08:30:00+00:00"  # high: 24 h
    assert report.resolution_notes == "fixed by patch 37"
    assert report.commit_shas == ["6d152eaafb9ebfb840e898f2affcd247604b4496"]
    note = report.events.get(kind="note")
    assert (note.actor, note.message, note.created_at.isoformat()) == (
        "alice",
        "note 0 on 37",
        "2025-08-11T09:30:00+00:00",
    )
    imported = report.events.get(kind="imported")
    assert imported.created_at == report.created_at

    claimed = BugReport.objects.get(legacy_id="2114e068-9f27-f52c-4492-74d2ea59679a")  # JSONL
    assert claimed.status == "in_progress"  # "claimed"
    assert claimed.release_sha == "e3838b9ed5a9422a8bc083117eb86c57a81100a1"
    assert claimed.telemetry == {"user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    history = claimed.events.get(kind="status_changed")
    assert history.data["from"] == "new" and history.data["to"] == "in_progress"
    assert history.actor == "agent:fixer-1"
    assert history.created_at.isoformat() == "2025-09-05T03:07:00+00:00"

    with_screenshots = BugReport.objects.get(legacy_id="ec371ce5-43b7-6a11-0151-d0e471ca2ca8")
    assert with_screenshots.metadata["legacy"]["extra"]["screenshots"] == [
        "uploads/shots/269-0.png",
        "uploads/shots/269-1.png",
    ]
    assert with_screenshots.created_at.isoformat() == "2025-06-23T11:37:00+00:00"  # epoch ms

    with_agent = BugReport.objects.get(legacy_id="109257f7-6862-bf79-3f4f-8b9d28f1a81b")
    # The old system's attempt is history, not a run made here (docs/rollout.md).
    assert (with_agent.attempts, with_agent.automation_enabled) == (0, True)
    assert with_agent.metadata["legacy"]["attempts"] == 1
    assert with_agent.events.get(kind="agent_log").message == "docker runner exited with status 1"
    assert with_agent.environment == "production"

    reporter_object = BugReport.objects.get(legacy_id="ef581c14-7ec8-b82f-876e-2c750d86f17a")
    assert reporter_object.reporter_id == "u-26"
    assert reporter_object.metadata["legacy"]["extra"]["reporter"] == {
        "email": "user14@example.com"
    }
    # The import is history, not a new change: no version bump, nothing stamped "now".
    assert reporter_object.version == 1
    assert reporter_object.updated_at == reporter_object.created_at


def test_a_second_run_inserts_nothing():
    backfill(SAMPLE / "reports", expect_exit=1)
    reports, events = BugReport.objects.count(), BugReportEvent.objects.count()

    output = backfill(SAMPLE / "reports", expect_exit=1)

    assert (BugReport.objects.count(), BugReportEvent.objects.count()) == (reports, events)
    numbers = summary_numbers(output)
    assert (numbers["inserted"], numbers["already present"]) == ("0", "301")


def test_a_dry_run_writes_nothing_and_says_what_it_would_do():
    output = backfill(SAMPLE / "reports", "--dry-run", expect_exit=1)

    assert BugReport.objects.count() == 0
    assert BugReportEvent.objects.count() == 0
    assert "Dry run: nothing was written." in output
    numbers = summary_numbers(output)
    assert (numbers["would insert"], numbers["already present"], numbers["invalid"]) == (
        "300",
        "1",
        "5",
    )


def test_batches_and_file_order_do_not_change_the_result(tmp_path, sample_copy):
    backfill(sample_copy, "--batch-size", "1", expect_exit=1)
    small_batches = _snapshot()
    wipe()

    backfill(sample_copy, "--batch-size", "100000", expect_exit=1)

    assert _snapshot() == small_batches


def _snapshot():
    """What an import wrote; dedup groups (random ids) stand in by their fingerprint."""
    fingerprints = {str(k): v for k, v in DedupGroup.objects.values_list("id", "fingerprint")}
    reports = sorted(
        BugReport.objects.values_list(
            "id",
            "legacy_id",
            "status",
            "severity",
            "created_at",
            "updated_at",
            "resolved_at",
            "version",
            "duplicate_of",
            "dedup_group__fingerprint",
            "metadata",
        )
    )
    events = sorted(
        (
            (
                str(e.report_id),
                e.kind,
                e.actor,
                e.message,
                e.created_at,
                _ungrouped(e.data, fingerprints),
            )
            for e in BugReportEvent.objects.all()
        ),
        key=repr,
    )
    groups = sorted(
        DedupGroup.objects.values_list(
            "fingerprint", "canonical_id", "occurrences", "first_seen", "last_seen", "active"
        )
    )
    return reports, events, groups


def _ungrouped(data: dict, fingerprints: dict) -> str:
    if isinstance(data, dict) and "group" in data:
        data = {**data, "group": fingerprints.get(data["group"], data["group"])}
    return json.dumps(data, sort_keys=True)


def wipe() -> None:
    """Delete every report (duplicates first: duplicate_of protects canonicals)."""
    BugReport.objects.filter(duplicate_of__isnull=False).delete()
    BugReport.objects.all().delete()


def test_same_id_with_other_content_is_a_conflict_and_the_first_read_wins(tmp_path):
    write(tmp_path / "a.json", legacy("r-1", title="First title"))
    write(tmp_path / "b.jsonl", json.dumps(legacy("r-1", title="Second title")) + "\n")
    write(tmp_path / "c.json", [legacy("r-1", title="First title"), legacy("r-2")])

    output = backfill(tmp_path)

    assert BugReport.objects.get(legacy_id="r-1").title == "First title"
    numbers = summary_numbers(output)
    assert (numbers["inserted"], numbers["already present"], numbers["conflicts"]) == (
        "2",
        "1",
        "1",
    )
    assert "r-1 in " + str(tmp_path / "b.jsonl") + " line 1" in output

    # A re-export with the new content later on is still the same conflict, nothing changes.
    output = backfill(tmp_path)
    assert summary_numbers(output)["conflicts"] == "1"
    assert BugReport.objects.get(legacy_id="r-1").title == "First title"


def test_invalid_records_are_named_with_their_index_or_line(tmp_path):
    write(
        tmp_path / "batch.json",
        [legacy("ok-1"), {"id": "x", "status": "open"}, "text", legacy("ok-2", status="parked")],
    )
    write(
        tmp_path / "lines.jsonl",
        json.dumps(legacy("ok-3"))
        + "\n\n"
        + json.dumps(legacy("bad-time", created_at="yesterday"))
        + "\n{oops\n",
    )

    output = backfill(tmp_path, expect_exit=1)

    assert set(BugReport.objects.values_list("legacy_id", flat=True)) == {"ok-1", "ok-3"}
    assert f"{tmp_path / 'batch.json'} [1]: no title" in output
    assert f"{tmp_path / 'batch.json'} [2]: a string where a report object was expected" in output
    assert f"{tmp_path / 'batch.json'} [3]: unknown status 'parked'" in output
    assert f"{tmp_path / 'lines.jsonl'} line 3: unparseable created_at 'yesterday'" in output
    assert f"{tmp_path / 'lines.jsonl'} line 4: not valid JSON" in output


def test_timestamps_severities_and_statuses_in_every_legacy_spelling(tmp_path):
    write(
        tmp_path / "spellings.json",
        [
            legacy("t-1", created_at="2025-07-01 10:00:00", severity="P0", status="In-Progress"),
            legacy("t-2", created_at=1751364000, severity="sev4", status="WONTFIX"),
            legacy("t-3", created_at=1751364000000, severity="High", status="pending_verification"),
            legacy("t-4", created_at="2025-07-01T12:00:00+02:00", status="fixed"),
            legacy("t-5", severity="urgent", source="robot", status="duplicate"),
        ],
    )

    backfill(tmp_path)

    rows = {r.legacy_id: r for r in BugReport.objects.all()}
    assert {r.created_at.isoformat() for r in rows.values()} == {"2025-07-01T10:00:00+00:00"}
    assert [(rows[k].severity, rows[k].status) for k in ("t-1", "t-2", "t-3", "t-4", "t-5")] == [
        ("critical", "in_progress"),
        ("low", "closed"),
        ("high", "awaiting_verification"),
        ("medium", "resolved"),
        ("medium", "closed"),
    ]
    # Values outside the format are kept, not lost.
    assert rows["t-5"].metadata["legacy"]["extra"] == {"severity": "urgent", "source": "robot"}
    assert rows["t-5"].source == "user"


def test_values_too_long_for_their_column_are_cut_and_kept_whole_in_metadata(tmp_path):
    long_title = "T" * 400
    write(
        tmp_path / "long.json",
        legacy("long-1", title=long_title, component="c" * 300, notes=[{"text": "no time"}]),
    )

    backfill(tmp_path)

    report = BugReport.objects.get(legacy_id="long-1")
    assert report.title == long_title[:300]
    assert report.metadata["legacy"]["extra"]["title"] == long_title
    assert report.metadata["legacy"]["extra"]["component"] == "c" * 300
    note = report.events.get(kind="note")
    assert note.created_at == report.created_at and note.message == "no time"


def test_nul_characters_and_a_missing_id_still_import_idempotently(tmp_path):
    write(
        tmp_path / "odd.json",
        {
            "title": "bad\u0000byte",
            "status": "new",
            "created_at": "2025-07-01T00:00:00Z",
            "notes": [{"at": "2025-07-01T01:00:00Z", "text": "x\u0000y"}],
        },
    )

    backfill(tmp_path)
    backfill(tmp_path)

    report = BugReport.objects.get()
    assert report.legacy_id.startswith("sha256:")
    assert report.title == "bad\ufffdbyte"


def test_archive_moves_only_files_whose_reports_are_all_committed(tmp_path, sample_copy):
    archive = tmp_path / "archive"

    backfill(sample_copy, "--archive", archive, "--batch-size", "17", expect_exit=1)

    left = sorted(p.name for p in sample_copy.rglob("*") if p.is_file())
    assert left == sorted(bad["file"] for bad in EXPECTED["bad_files"])
    archived = [p for p in archive.rglob("*") if p.is_file()]
    assert len(archived) == 251
    assert (archive / "legacy" / "2025").is_dir()  # the layout under the root is kept
    assert BugReport.objects.count() == 300


def test_options_that_cannot_go_together_are_refused(tmp_path):
    with pytest.raises(CommandError, match="--dry-run"):
        call_command(
            "backfill_json", str(tmp_path), "--dry-run", "--checkpoint", str(tmp_path / "c")
        )
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("backfill_json", str(tmp_path), "--batch-size", "0")


def test_a_checkpoint_of_a_finished_run_does_nothing_more(tmp_path):
    write(tmp_path / "in" / "a.json", legacy("c-1"))
    checkpoint = tmp_path / "run.ckpt"
    backfill(tmp_path / "in", "--checkpoint", checkpoint)
    write(tmp_path / "in" / "b.json", legacy("c-2"))

    output = backfill(tmp_path / "in", "--checkpoint", checkpoint)

    assert "had already finished" in output
    assert BugReport.objects.count() == 1
    with pytest.raises(CommandError, match="belongs to a run over"):
        call_command("backfill_json", str(tmp_path / "elsewhere"), "--checkpoint", str(checkpoint))


def test_the_samples_duplicates_share_a_canonical_and_different_errors_never_do():
    backfill(SAMPLE / "reports", expect_exit=1)

    rows = {r.legacy_id: r for r in BugReport.objects.all()}
    canonical_of = {legacy_id: row.duplicate_of_id or row.pk for legacy_id, row in rows.items()}
    by_key: dict[tuple, set] = {}
    errors_of_canonical: dict = {}
    for expected in EXPECTED["reports"]:
        if expected["error"] is None:
            continue
        key = (expected["error"], expected["component"], expected["route"])
        canonical = canonical_of[expected["legacy_id"]]
        by_key.setdefault(key, set()).add(canonical)
        errors_of_canonical.setdefault(canonical, set()).add(expected["error"])
    assert all(len(canonicals) == 1 for canonicals in by_key.values()), by_key
    assert all(len(errors) == 1 for errors in errors_of_canonical.values())
    # Grouping never changes what the files say.
    assert Counter(BugReport.objects.values_list("status", flat=True)) == EXPECTED["by_status"]
    for row in BugReport.objects.filter(duplicate_of__isnull=False):
        canonical = row.duplicate_of
        assert canonical.duplicate_of_id is None
        assert canonical.created_at <= row.created_at


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, not even `except Exception`."""


def _kill_at(monkeypatch, method: str, call: int, *, before: bool = True):
    original = getattr(Backfill, method)
    calls = {"n": 0}

    def wrapper(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call and before:
            raise Killed
        result = original(self, *args, **kwargs)
        if calls["n"] == call:
            raise Killed
        return result

    monkeypatch.setattr(Backfill, method, wrapper)


@pytest.mark.parametrize(
    ("method", "call", "before"),
    [
        ("_write_pending", 7, False),  # state for the batch written, the batch not committed yet
        ("_commit_checkpoint", 7, True),  # the batch committed, its checkpoint not in place yet
        ("_finish_archive_moves", 7, True),  # committed and checkpointed, files not moved yet
        ("_take", 100, True),  # in the middle of reading a file
        ("_take", 290, True),  # in the middle of the big array export
    ],
)
def test_an_interruption_at_any_step_of_a_batch_resumes_exactly(
    tmp_path, sample_copy, monkeypatch, method, call, before
):
    archive = tmp_path / "archive"
    reference = Backfill([sample_copy], batch_size=9, archive_dir=archive).run()
    expected = _snapshot()
    wipe()
    for path in archive.rglob("*.json*"):  # put the files back where they were
        target = sample_copy / path.relative_to(archive / sample_copy.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)

    checkpoint = tmp_path / "run.checkpoint"
    with monkeypatch.context() as patch:
        _kill_at(patch, method, call=call, before=before)
        with pytest.raises(Killed):
            Backfill([sample_copy], batch_size=9, archive_dir=archive, checkpoint=checkpoint).run()
    assert 0 < BugReport.objects.count() < 300
    resumed = Backfill([sample_copy], batch_size=9, archive_dir=archive, checkpoint=checkpoint)
    summary = resumed.run()

    assert resumed.resumed
    assert _snapshot() == expected
    assert summary.as_dict() == reference.as_dict()
    assert sorted(p.name for p in sample_copy.rglob("*.json*")) == sorted(
        b["file"] for b in EXPECTED["bad_files"]
    )


def test_an_archive_inside_the_imported_tree_is_not_imported_again(tmp_path):
    write(tmp_path / "legacy" / "a.json", legacy("in-tree-1"))
    write(tmp_path / "legacy" / "z.json", legacy("in-tree-2"))
    archive = tmp_path / "legacy" / "done"

    output = backfill(tmp_path / "legacy", "--archive", archive)
    again = backfill(tmp_path / "legacy", "--archive", archive)

    assert summary_numbers(output)["inserted"] == "2"
    assert summary_numbers(again)["read"] == "0"
    assert sorted(p.name for p in archive.rglob("*.json")) == ["a.json", "z.json"]
