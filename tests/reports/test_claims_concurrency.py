import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections
from rest_framework.test import APIClient

from bugtracker.services import api_key_create
from reports.models import BugReport
from reports.services import report_build

REPORTS = 500
THREADS = 16
PROCESSES = 4


def seed(n: int) -> None:
    severities = ["critical", "high", "medium", "low"]
    BugReport.objects.bulk_create(
        [report_build(data={"title": f"r{i}", "severity": severities[i % 4]}) for i in range(n)]
    )


def claim_with_threads(count: int) -> tuple[list[str], Counter]:
    clients = []
    for i in range(count):
        _, raw = api_key_create(name=f"racer-{i}", role="agent")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        clients.append(client)
    claimed, statuses, lock = [], Counter(), threading.Lock()

    def run(client):
        try:
            while True:
                response = client.post("/api/bug-reports/claim-next", {}, format="json")
                with lock:
                    statuses[response.status_code] += 1
                if response.status_code == 204:
                    return
                if response.status_code == 200:
                    with lock:
                        claimed.append(response.json()["report"]["id"])
                elif response.status_code not in (409, 503):
                    return
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return claimed, statuses


def child_env() -> dict:
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env["SECRET_KEY"] = "test"
    return env


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_threads_and_processes_claim_every_report_exactly_once():
    seed(REPORTS)
    script = Path(__file__).with_name("claim_worker.py")
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), f"proc-{i}"],
            cwd=settings.BASE_DIR,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    by_threads, statuses = claim_with_threads(THREADS)
    by_processes = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        by_processes += json.loads(out)

    everything = by_threads + by_processes
    assert len(everything) == REPORTS
    assert len(set(everything)) == REPORTS
    assert set(statuses) <= {200, 204}, statuses
    assert BugReport.objects.filter(claim_holder__isnull=True).count() == 0
    assert BugReport.objects.filter(status="in_progress").count() == REPORTS


@pytest.mark.django_db(transaction=True)
def test_threads_never_get_a_500_or_the_same_report():
    """On SQLite too: contention may answer 503 with Retry-After, never a crash or a double claim."""
    seed(100)
    claimed, statuses = claim_with_threads(8)
    assert 500 not in statuses
    assert set(statuses) <= {200, 204, 409, 503}, statuses
    assert len(claimed) == len(set(claimed))
    holders = Counter(BugReport.objects.exclude(claim_holder=None).values_list("pk", flat=True))
    assert len(holders) == len(claimed)
