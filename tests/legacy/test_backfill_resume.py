"""backfill_json as a real process: killed with SIGKILL and resumed, and --watch during cut-over."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from dedup.models import DedupGroup
from reports.models import BugReport, BugReportEvent
from reports.services import report_create, report_transition

SAMPLE = Path(settings.BASE_DIR) / "tests" / "fixtures" / "legacy-sample"
MANAGE = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]


def database_url() -> str:
    """The test database, as DATABASE_URL for a child process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra) -> dict:
    env = dict(os.environ, DATABASE_URL=database_url(), SECRET_KEY="test-secret-key")
    env.pop("LEGACY_MIRROR_DIR", None)
    env.update(extra)
    return env


def snapshot() -> tuple:
    """Everything the import writes, without surrogate ids (dedup groups: by fingerprint).
    The `legacy` claim's lease runs from each batch's import, so only its presence counts."""
    fingerprints = dict(DedupGroup.objects.values_list("id", "fingerprint"))
    reports = [
        {
            **row,
            "dedup_group_id": fingerprints.get(row["dedup_group_id"]),
            "claim_expires_at": row["claim_expires_at"] is not None,
        }
        for row in BugReport.objects.order_by("id").values()
    ]
    by_text = {str(k): v for k, v in fingerprints.items()}
    events = sorted(
        (
            str(e["report_id"]),
            e["kind"],
            e["actor"],
            e["message"],
            json.dumps(
                {**e["data"], "group": by_text.get(e["data"]["group"])}
                if "group" in e["data"]
                else e["data"],
                sort_keys=True,
            ),
            e["created_at"],
        )
        for e in BugReportEvent.objects.values()
    )
    groups = sorted(
        (
            g["fingerprint"],
            str(g["canonical_id"]),
            g["occurrences"],
            g["first_seen"],
            g["last_seen"],
            g["active"],
        )
        for g in DedupGroup.objects.values()
    )
    return reports, events, groups


def summary_block(output: str) -> str:
    return output[output.index("Summary:") :]


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_with_sigkill_and_resumed_ends_exactly_like_an_uninterrupted_one(tmp_path):
    args = [*MANAGE, "backfill_json", str(SAMPLE / "reports"), "--batch-size", "4"]
    reference = subprocess.run(args, env=child_env(), capture_output=True, text=True, timeout=120)
    assert reference.returncode == 1, reference.stderr  # the sample has invalid files
    expected = snapshot()
    assert len(expected[0]) == 300
    BugReport.objects.filter(duplicate_of__isnull=False).delete()
    BugReport.objects.all().delete()

    checkpoint = tmp_path / "backfill.checkpoint"
    kills_mid_import = 0
    # Kill it as soon as these many reports are in, then let the last run finish.
    for threshold in (1, 60, 150, 240, 300, None):
        process = subprocess.Popen(
            [*args, "--checkpoint", str(checkpoint)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if threshold is None:
            output, errors = process.communicate(timeout=120)
            assert process.returncode == 1, errors
            break
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if BugReport.objects.count() >= threshold:
                break
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills_mid_import += BugReport.objects.count() < 300
        process.stdout.close()
        process.stderr.close()

    assert kills_mid_import >= 2
    assert snapshot() == expected
    assert "Resumed from checkpoint" in output or "had already finished" in output
    assert summary_block(output) == summary_block(reference.stdout)


@pytest.mark.django_db(transaction=True)
def test_watch_imports_new_files_within_seconds_and_never_echoes_the_mirror(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    # The worst case: the mirror writes into the very directory being watched.
    process = subprocess.Popen(
        [*MANAGE, "backfill_json", str(legacy), "--watch", "--interval", "0.2"],
        env=child_env(LEGACY_MIRROR_DIR=str(legacy)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        written = time.monotonic()
        (legacy / "old-path-1.json").write_text(
            json.dumps(
                {
                    "id": "old-1",
                    "title": "From the old path",
                    "status": "open",
                    "created_at": "2025-09-01T10:00:00Z",
                }
            )
        )
        while not BugReport.objects.filter(legacy_id="old-1").exists():
            assert time.monotonic() - written < 10, "the watcher did not import the file"
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        assert time.monotonic() - written < 5

        with override_settings(LEGACY_MIRROR_DIR=str(legacy)):
            report = report_create(
                actor="agent-1", data={"title": "Via the API", "severity": "high"}
            )
            report_transition(report_id=report.pk, to_status="triaged", actor="agent-1")
        mirrored = json.loads((legacy / f"{report.pk}.json").read_text())
        assert mirrored["status"] == "triaged"
        time.sleep(2.5)  # several scans, past the settle time of the mirror file

        assert BugReport.objects.count() == 2
        report.refresh_from_db()
        assert (report.legacy_id, report.version, report.status) == (None, 2, "triaged")
    finally:
        process.send_signal(signal.SIGTERM)
        output, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "inserted:         1" in output
    assert "already present:  1" in output
