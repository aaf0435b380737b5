"""16 agents run the whole loop at once on PostgreSQL: claim-next → heartbeat → resolve or
release with a random reason, until nothing is left for them."""

import random
import threading
from collections import Counter

import pytest
from django.db import connections
from django.db.models import Count
from rest_framework.test import APIClient

from bugtracker.services import api_key_create
from reports.models import BugReport, ClaimAttempt, ReleaseReason
from tests.reports.test_claims_concurrency import seed

REPORTS = 500
AGENTS = 16
URL = "/api/bug-reports"


def agent(name: str, seed_value: int, tally: Counter, lock: threading.Lock) -> None:
    _, raw = api_key_create(name=name, role="agent")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    rng = random.Random(seed_value)
    reasons = list(ReleaseReason.values)
    try:
        while True:
            taken = client.post(f"{URL}/claim-next", {"lease_seconds": 300}, format="json")
            with lock:
                tally[("claim-next", taken.status_code)] += 1
            if taken.status_code != 200:
                return
            body = taken.json()
            report_id, token = body["report"]["id"], body["claim_token"]
            headers = {"HTTP_X_CLAIM_TOKEN": token}
            beat = client.post(f"{URL}/{report_id}/heartbeat", {}, format="json", **headers)
            if rng.random() < 0.4:
                what, payload = "resolve", {"resolution_notes": f"fixed by {name}"}
            else:
                what, payload = "release", {"reason": rng.choice(reasons), "note": name}
            done = client.post(f"{URL}/{report_id}/{what}", payload, format="json", **headers)
            with lock:
                tally[("heartbeat", beat.status_code)] += 1
                tally[(what, done.status_code)] += 1
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sixteen_agents_run_the_loop_and_every_attempt_closes_once(settings):
    settings.RETRY_COOLDOWN = 0  # env_error releases come straight back (to other agents)
    settings.MAX_ATTEMPTS = 3
    seed(REPORTS)
    tally, lock = Counter(), threading.Lock()
    threads = [
        threading.Thread(target=agent, args=(f"loop-{i}", i, tally, lock)) for i in range(AGENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads)

    codes = {code for (_, code) in tally}
    assert codes <= {200, 204}, tally  # no 500, no lost lease, no token trouble
    claims = tally[("claim-next", 200)]
    assert claims >= REPORTS

    # Every report ends resolved, or waiting for a human, or back in the pool.
    for report in BugReport.objects.all():
        assert report.claim_holder is None, report
        assert (
            report.status == "resolved"
            or report.needs_human
            or (report.status == "triaged" and report.assignee_id is None)
        ), (report.status, report.needs_human)

    # Each claim opened one attempt, and each attempt was closed exactly once, as answered.
    attempts = ClaimAttempt.objects.all()
    assert attempts.count() == claims
    assert not attempts.filter(ended_at__isnull=True).exists()
    outcomes = Counter(attempts.values_list("outcome", flat=True))
    assert outcomes == Counter(
        {"resolved": tally[("resolve", 200)], "released": tally[("release", 200)]}
    )
    epochs = attempts.values("report", "claim_epoch").annotate(n=Count("id"))
    assert {row["n"] for row in epochs} == {1}
    # A report released MAX_ATTEMPTS times without env_error needs a human.
    for report in BugReport.objects.filter(status="triaged", needs_human=False):
        assert report.attempts < settings.MAX_ATTEMPTS
