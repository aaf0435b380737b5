"""Request rates per role, counted in fixed windows with an atomic increment.

Where the count lives decides whether it holds across processes (several gunicorn workers,
several machines): a Redis or Memcached `CACHE_URL` is shared and increments atomically, so
the count lives there (`cache.add` + `cache.incr`, as django-ratelimit does). Any other cache
(the default in-process locmem, file, database caches) would count per process or race, so
the count lives in the database instead: one upsert per request on the caller's window row.
"""

import hashlib
import logging
import math
import time

from django.core.cache import caches
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from .clients import client_address
from .models import ThrottleWindow
from .permissions import caller_role

logger = logging.getLogger("bugtracker.throttling")

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`"60/min"` → (60, 60): requests allowed per window, window length in seconds."""
    try:
        count, period = rate.split("/")
        return int(count), PERIODS[period.strip()[0].lower()]
    except (ValueError, KeyError, IndexError):
        raise ImproperlyConfigured(
            f"Throttle rate {rate!r} is not like 60/min (per s, min, hour or day)."
        ) from None


def shared_cache(cache) -> bool:
    """True when the cache is one every process shares and increments atomically."""
    return isinstance(cache, (RedisCache, BaseMemcachedCache))


class CacheCounter:
    """Counts in the shared cache: the window's key is added at 0 once, then incremented."""

    def __init__(self, cache):
        self.cache = cache

    def hit(self, ident: str, window_start: int, duration: int) -> int:
        key = f"throttle:{ident}:{window_start}"
        for _ in range(2):
            self.cache.add(key, 0, timeout=duration + 1)
            try:
                return self.cache.incr(key)
            except ValueError:  # expired between add and incr: add it again
                continue
        return 1


# Upsert: a new window row starts at 1, an existing one counts one more, atomically on both
# PostgreSQL and SQLite (3.35+), in one statement.
_UPSERT = (
    f"INSERT INTO {ThrottleWindow._meta.db_table} (ident, window_start, expires, hits) "
    "VALUES (%s, %s, %s, 1) ON CONFLICT (ident, window_start) "
    f"DO UPDATE SET hits = {ThrottleWindow._meta.db_table}.hits + 1 RETURNING hits"
)


class DatabaseCounter:
    """Counts in the database, for caches that are per process or cannot increment atomically.

    On PostgreSQL the table is UNLOGGED (migration 0002): a count is worth no WAL write and no
    disk flush per request, and after a crash every window simply starts again.
    """

    def hit(self, ident: str, window_start: int, duration: int) -> int:
        if connection.in_atomic_block:  # a savepoint, so a failure leaves the caller's intact
            with transaction.atomic():
                return self._count(ident, window_start, window_start + duration)
        return self._count(ident, window_start, window_start + duration)  # autocommits alone

    @staticmethod
    def _count(ident: str, window_start: int, expires: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT, [ident, window_start, expires])
            (hits,) = cursor.fetchone()
        if hits == 1:  # a new window: windows that ended are gone for good
            ThrottleWindow.objects.filter(expires__lt=int(time.time())).delete()
        return hits


def counter():
    cache = caches["default"]
    return CacheCounter(cache) if shared_cache(cache) else DatabaseCounter()


class RoleRateThrottle(BaseThrottle):
    """One rate per role (settings THROTTLE_<ROLE>). Authenticated callers are counted per key
    name, anonymous ones per client address (bugtracker.clients.client_address)."""

    THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    timer = time.time

    def allow_request(self, request, view):
        scope = caller_role(request) or "anonymous"
        rate = self.THROTTLE_RATES.get(scope)
        if rate is None:
            return True
        allowed, duration = parse_rate(rate)
        caller = request.user.name if caller_role(request) else client_address(request)
        digest = hashlib.sha256(f"{caller}\n{duration}".encode()).hexdigest()[:40]
        ident = f"{scope}:{digest}"
        now = self.timer()
        window_start = int(now // duration * duration)
        try:
            hits = counter().hit(ident, window_start, duration)
        except Exception as exc:  # any store's client error: Redis, Memcached or the database
            # The counter's store is down: serve unthrottled rather than fail the request here.
            logger.warning("throttle store unavailable, request not counted: %s", exc)
            return True
        if hits <= allowed:
            return True
        self._wait = window_start + duration - now
        return False

    def wait(self):
        return max(1, math.ceil(self._wait))
