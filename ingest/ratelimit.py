"""Per-DSN rate (`INGEST_RATE_PER_KEY`, e.g. `600/min`): a fixed window counted in the shared
cache, so every gunicorn worker and instance counts together."""

import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("ingest.ratelimit")

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int] | None:
    """`600/min` → (600, 60); empty or `off` → None (no limit)."""
    rate = (rate or "").strip().lower()
    if rate in ("", "off", "none"):
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[:1] or "m"]


def retry_after(dsn_key_id: int, *, now: float | None = None) -> int | None:
    """Count one request of this DSN; the seconds to wait when it is over its rate, else None."""
    limit = parse_rate(settings.INGEST_RATE_PER_KEY)
    if limit is None:
        return None
    count, seconds = limit
    now = time.time() if now is None else now
    window = int(now // seconds)
    cache_key = f"ingest-rate:{dsn_key_id}:{window}"
    try:
        if cache.add(cache_key, 1, seconds + 1):
            used = 1
        else:
            try:
                used = cache.incr(cache_key)
            except ValueError:  # expired between add and incr
                cache.add(cache_key, 1, seconds + 1)
                used = 1
    except Exception as exc:  # the shared cache is down: accept rather than lose events
        logger.warning("ingest rate cache unavailable, request not counted: %s", exc)
        return None
    if used <= count:
        return None
    return max(1, int((window + 1) * seconds - now + 0.999))
