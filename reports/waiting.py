"""claim-next's long-poll: wait until a matching report can be claimed, then claim it.

On PostgreSQL a trigger (migration 0004) NOTIFYs `bugtracker_claimable` when a canonical
report becomes claimable (submitted, released, reopened), with its severity, category and
component; the process's listener wakes one waiter whose filters match. Waiters also look
again every few seconds on their own, for what no commit announces (a lease running out).
"""

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection

from bugtracker.wakeups import Channel, release_connection

from .claims import severity_rank

CLAIMABLE = Channel("bugtracker_claimable")
# A notified waiter claims at once; these bound what only a look finds (a lease that ran out,
# a cooldown that ended). Each look is a claim statement per parked agent: 64 agents looking
# every 5 s cost submissions 15 % on 2 cores (benchmarks/longpoll.py), every 15 s far less.
RECHECK_SECONDS = {"postgresql": 15.0}
POLL_SECONDS = 0.5


def claim_filter_matches(filters: dict[str, Any], report: dict[str, Any]) -> bool:
    """Whether a report with these fields (a notification's payload) passes claim-next's
    filters: the filter part of claims.claimable_reports, in memory (a test holds them
    equal). A payload without the fields matches every waiter."""
    if not report:
        return True
    if filters.get("severity") and report.get("severity") not in filters["severity"]:
        return False
    minimum = filters.get("min_severity")
    if (
        minimum
        and report.get("severity")
        and severity_rank(report["severity"]) > severity_rank(minimum)
    ):
        return False
    for field in ("category", "component"):
        wanted = filters.get(field)
        if wanted:
            wanted = [wanted] if isinstance(wanted, str) else wanted
            if report.get(field) not in wanted:
                return False
    return True


def claim_waiting(*, filters: dict[str, Any], wait: float, attempt: Callable[[], Any]):
    """attempt() until it returns something or `wait` seconds pass (then None).

    The waiter is parked before the first attempt, so a report committed between an empty
    attempt and the sleep still wakes it.
    """
    deadline = time.monotonic() + min(wait, settings.LONG_POLL_MAX_SECONDS)
    waiter = CLAIMABLE.park(lambda payload: claim_filter_matches(filters, payload))
    recheck = RECHECK_SECONDS.get(connection.vendor, POLL_SECONDS)
    try:
        while True:
            result = attempt()
            remaining = deadline - time.monotonic()
            if result is not None or remaining <= 0:
                return result
            release_connection()
            waiter.wait(min(remaining, recheck))
    finally:
        CLAIMABLE.leave(waiter)
