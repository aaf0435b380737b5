"""Per-DSN rate (`INGEST_RATE_PER_KEY`, e.g. `600/min`), counted in fixed windows by the same
counter as the API's throttles (bugtracker.throttling): in Redis or Memcached when the cache is
one, else in the database, so every gunicorn worker and instance counts together."""

import logging
import math
import time

from django.conf import settings

from bugtracker.throttling import counter, parse_rate

logger = logging.getLogger("ingest.ratelimit")

OFF = ("", "off", "none")


def rate_limit() -> tuple[int, int] | None:
    """(requests, window seconds) of INGEST_RATE_PER_KEY, or None when it is off."""
    rate = (settings.INGEST_RATE_PER_KEY or "").strip()
    return None if rate.lower() in OFF else parse_rate(rate)


def retry_after(dsn_key_id: int, *, now: float | None = None) -> int | None:
    """Count one request of this DSN; the seconds to wait when it is over its rate, else None."""
    limit = rate_limit()
    if limit is None:
        return None
    allowed, duration = limit
    now = time.time() if now is None else now
    window_start = int(now // duration * duration)
    try:
        hits = counter().hit(f"ingest-dsn:{dsn_key_id}", window_start, duration)
    except Exception as exc:  # the counter's store is down: accept rather than lose events
        logger.warning("ingest rate store unavailable, request not counted: %s", exc)
        return None
    if hits <= allowed:
        return None
    return max(1, math.ceil(window_start + duration - now))
