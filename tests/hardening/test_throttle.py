"""Client identity behind proxies, and throttles that count in fixed windows and hold across
processes, on the default cache (counted in the database) and on Redis."""

import logging
import os
import secrets
import time

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import RequestFactory, override_settings

from bugtracker import throttling
from bugtracker.clients import client_address
from bugtracker.models import ThrottleWindow
from bugtracker.throttling import RoleRateThrottle, parse_rate
from reports.models import BugReport

from .live import LiveServer

URL = "/api/bug-reports"


@pytest.fixture
def rates(monkeypatch):
    def set_rates(**rates):
        monkeypatch.setattr(RoleRateThrottle, "THROTTLE_RATES", rates)

    return set_rates


def request_from(remote="198.51.100.9", forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/api/bug-reports", **extra)


# The client's address ------------------------------------------------------------------------


def test_without_trusted_proxies_the_address_is_the_peers_whatever_the_header_says():
    assert client_address(request_from(forwarded="203.0.113.7")) == "198.51.100.9"


@pytest.mark.parametrize(
    ("hops", "forwarded", "client"),
    [
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client prepended a lie
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (2, "203.0.113.7", "203.0.113.7"),  # fewer entries than hops: the leftmost
        (1, "  2001:DB8::1 ", "2001:db8::1"),
        (1, "[2001:db8::1]:443", "2001:db8::1"),
        (1, "203.0.113.7:51000", "203.0.113.7"),
        (1, "not-an-address", "198.51.100.9"),  # garbage from the proxy: the peer
        (1, "", "198.51.100.9"),
    ],
)
def test_trusted_proxies_say_how_many_hops_of_x_forwarded_for_to_trust(hops, forwarded, client):
    with override_settings(TRUSTED_PROXIES=hops):
        assert client_address(request_from(forwarded=forwarded)) == client


@pytest.mark.django_db
@override_settings(TRUSTED_PROXIES=1)
def test_the_idempotency_scope_of_anonymous_callers_is_the_client_address(api_client):
    def submit(forwarded):
        return api_client.post(
            URL,
            {"title": "Same key"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="key-1",
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    first = submit("6.6.6.1, 203.0.113.7")
    replayed = submit("6.6.6.2, 203.0.113.7")  # the same client, a new entry of its own
    other_client = submit("203.0.113.8")
    assert (first.status_code, replayed.status_code, other_client.status_code) == (201, 201, 201)
    assert replayed["Idempotent-Replayed"] == "true"
    assert replayed.json()["id"] == first.json()["id"]
    assert other_client.json()["id"] != first.json()["id"]


@pytest.mark.django_db
@override_settings(TRUSTED_PROXIES=1)
def test_the_access_log_names_the_client_address(api_client, caplog):
    with caplog.at_level(logging.INFO, logger="bugtracker.request"):
        api_client.get("/api/health", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    (record,) = [r for r in caplog.records if r.name == "bugtracker.request"]
    assert record.client == "203.0.113.7"
    assert record.getMessage().endswith("from 203.0.113.7")


# Throttling -----------------------------------------------------------------------------------


def anonymous_submissions(client, count, forwarded=lambda n: None):
    statuses = []
    for n in range(count):
        headers = {"HTTP_X_FORWARDED_FOR": forwarded(n)} if forwarded(n) else {}
        body = {"title": f"Anonymous report {n}"}
        statuses.append(client.post(URL, body, format="json", **headers).status_code)
    return statuses


@pytest.mark.django_db
@pytest.mark.parametrize("trusted", [0, 1])
def test_a_new_x_forwarded_for_on_each_request_does_not_escape_the_throttle(
    rates, api_client, trusted
):
    rates(anonymous="10/day")
    with override_settings(TRUSTED_PROXIES=trusted):
        statuses = anonymous_submissions(
            api_client, 20, forwarded=lambda n: f"10.{n // 256}.{n % 256}.1"
        )
    if trusted:
        # Behind one trusted proxy the rightmost entry is the proxy's word: 20 clients.
        assert statuses == [201] * 20
    else:
        assert statuses == [201] * 10 + [429] * 10
        assert BugReport.objects.count() == 10


@pytest.mark.django_db
@override_settings(TRUSTED_PROXIES=1)
def test_behind_a_proxy_a_client_rotating_its_own_entries_is_still_one_client(rates, api_client):
    rates(anonymous="5/day")
    statuses = anonymous_submissions(api_client, 8, forwarded=lambda n: f"6.6.6.{n}, 203.0.113.7")
    assert statuses == [201] * 5 + [429] * 3
    # Another client behind the same proxy has its own count.
    other = anonymous_submissions(api_client, 1, forwarded=lambda n: "203.0.113.8")
    assert other == [201]


@pytest.mark.django_db
def test_counts_live_in_fixed_windows(rates, agent_client, monkeypatch):
    rates(agent="3/min")
    now = [1_800_000_000.0]  # a window boundary (a multiple of 60)
    monkeypatch.setattr(RoleRateThrottle, "timer", staticmethod(lambda: now[0]))
    statuses = [agent_client.get(URL).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    now[0] += 45
    refused = agent_client.get(URL)
    assert refused.status_code == 429
    assert 15 <= int(refused["Retry-After"]) <= 16  # the window ends in 15 s
    now[0] += 15  # the next window
    assert [agent_client.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_default_cache_counts_in_the_database_and_a_shared_one_in_the_cache():
    cache = caches["default"]
    expected = (
        throttling.CacheCounter if throttling.shared_cache(cache) else throttling.DatabaseCounter
    )
    assert isinstance(throttling.counter(), expected)
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        assert isinstance(throttling.counter(), throttling.DatabaseCounter)
    redis = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
    }
    with override_settings(CACHES={"default": redis}):
        assert isinstance(throttling.counter(), throttling.CacheCounter)


@pytest.mark.django_db
def test_ended_windows_are_pruned_when_a_new_one_starts():
    now = int(time.time()) // 60 * 60
    ThrottleWindow.objects.create(ident="b", window_start=now - 120, expires=now - 60, hits=7)
    counter = throttling.DatabaseCounter()
    assert [counter.hit("a", now, 60) for _ in range(3)] == [1, 2, 3]
    assert list(ThrottleWindow.objects.values_list("ident", "hits")) == [("a", 3)]


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [("60/min", (60, 60)), ("5/s", (5, 1)), ("2/hour", (2, 3600)), ("1/day", (1, 86400))],
)
def test_rates_read_like_drfs(rate, parsed):
    assert parse_rate(rate) == parsed


# Across processes -----------------------------------------------------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cache", ["default", "redis"])
def test_three_gunicorn_workers_throttle_at_the_limit(tmp_path, cache):
    """`make serve` runs several workers; whatever the cache, they share one count."""
    if cache == "redis" and not os.environ.get("CACHE_URL", "").startswith("redis"):
        pytest.skip("needs the shared cache (CACHE_URL=redis://…), as in CI on PostgreSQL")
    from bugtracker.services import api_key_create

    _, key = api_key_create(name=f"throttled-{secrets.token_hex(4)}", role="agent")
    environ = {"CACHE_URL": "locmemcache://bugtracker"} if cache == "default" else {}
    server = LiveServer(
        database_url=_database_url(),
        log_path=tmp_path / "server.log",
        WEB_CONCURRENCY="3",
        GUNICORN_THREADS="1",
        THROTTLE_AGENT="6/day",  # a window that does not end during the test
        THROTTLE_ANONYMOUS="4/day",
        **environ,
    )
    auth = {"Authorization": f"Bearer {key}"}
    with server:
        agent = [server.request("GET", URL, headers=auth).status for _ in range(15)]
        anonymous = [
            server.request(
                "POST", URL, {"title": f"Rotating {n}"}, headers={"X-Forwarded-For": f"10.9.{n}.1"}
            ).status
            for n in range(10)
        ]
    assert (agent.count(200), agent.count(429)) == (6, 9), agent
    assert (anonymous.count(201), anonymous.count(429)) == (4, 6), anonymous
    assert BugReport.objects.count() == 4
    counted_in_database = ThrottleWindow.objects.exists()
    assert counted_in_database == (cache == "default")


@pytest.mark.postgres
@pytest.mark.django_db
def test_on_postgresql_the_counts_are_unlogged():
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = 'throttle_windows'")
        assert cursor.fetchone() == ("u",)
