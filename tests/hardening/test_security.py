"""Throttles per role, security headers and deploy checks, constant-time keys, no secret in logs."""

import json
import logging
import os
import secrets
import subprocess

import pytest
from django.test import override_settings

from bugtracker import throttling
from bugtracker.throttling import RoleRateThrottle
from telemetry.logging import JsonFormatter, TextFormatter
from tests.conftest import client_for
from tests.factories import make_report

from .live import BIN, ROOT

URL = "/api/bug-reports"


@pytest.fixture
def rates(monkeypatch):
    def set_rates(**rates):
        monkeypatch.setattr(RoleRateThrottle, "THROTTLE_RATES", rates)

    return set_rates


def hit(client, method):
    return client.post(URL, {"title": "x"}, format="json") if method == "POST" else client.get(URL)


@pytest.mark.django_db
def test_each_role_has_its_own_rate_and_429_says_when_to_retry(rates):
    rates(anonymous="2/min", reporter="3/min", agent="4/min", admin="5/min")
    cases = [
        (client_for(None), 2, "POST"),
        (client_for("reporter", "r1"), 3, "POST"),
        (client_for("agent", "a1"), 4, "GET"),
        (client_for("admin", "admin-1"), 5, "GET"),
    ]
    for client, allowed, method in cases:
        statuses = [hit(client, method).status_code for _ in range(allowed)]
        assert all(status < 400 for status in statuses), statuses
        throttled = hit(client, method)
        assert throttled.status_code == 429
        assert throttled["Content-Type"] == "application/problem+json"
        assert 1 <= int(throttled["Retry-After"]) <= 61
        assert throttled.json()["status"] == 429
    # Counted per key: another agent still gets through.
    assert client_for("agent", "a2").get(URL).status_code == 200


@pytest.mark.django_db
def test_security_headers_are_sent(api_client):
    response = api_client.get("/api/health", secure=True)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True)
def test_https_redirect_spares_the_health_probe(api_client):
    assert api_client.get("/api/health").status_code == 200
    redirect = api_client.get(URL)
    assert redirect.status_code == 301 and redirect["Location"].startswith("https://")


def test_deploy_check_passes_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "bugs.example.com",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    }
    command = [str(BIN / "python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_check_fails_with_debug_on(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "DEBUG": "1",
        "SECRET_KEY": secrets.token_urlsafe(64),
    }
    command = [str(BIN / "python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "security.W018" in result.stderr


@pytest.mark.django_db
def test_api_keys_are_checked_against_their_digest_only(agent_client):
    from bugtracker.models import ApiKey

    assert agent_client.get(URL).status_code == 200
    stored = ApiKey.objects.get(name="agent-1")
    # Only the digest is stored; a key whose digest matches nothing is refused.
    assert len(stored.key_hash) == 64 and not stored.key_hash.startswith("bt_")
    forged = client_for(None)
    forged.credentials(HTTP_AUTHORIZATION=f"Bearer {stored.key_hash}")
    assert forged.get(URL).status_code == 401


@pytest.mark.django_db
def test_no_key_or_claim_token_reaches_any_log_line(caplog, rates):
    rates()
    caplog.set_level(logging.DEBUG)
    from bugtracker.services import api_key_create

    _, raw_key = api_key_create(name="secretive-agent", role="agent")
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    report = make_report()
    assert client.post(URL, {"title": "Logged submission"}, format="json").status_code == 201
    claim = client.post(f"{URL}/{report.pk}/claim", {}, format="json")
    token = claim.json()["claim_token"]
    headers = {"HTTP_X_CLAIM_TOKEN": token}
    assert (
        client.post(f"{URL}/{report.pk}/heartbeat", {}, format="json", **headers).status_code == 200
    )
    wrong = client.post(f"{URL}/{report.pk}/heartbeat", {}, format="json", HTTP_X_CLAIM_TOKEN="no")
    assert wrong.status_code == 409
    assert (
        client.patch(
            f"{URL}/{report.pk}", {"severity": "low"}, format="json", **headers
        ).status_code
        == 200
    )
    assert (
        client.post(f"{URL}/{report.pk}/release", {}, format="json", **headers).status_code == 200
    )
    bad = client_for(None)
    bad.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}x")
    assert bad.get(URL).status_code == 401

    from reports.claims import hash_token

    secrets_seen = [raw_key, token, hash_token(token), f"{raw_key}x"]
    assert caplog.records, "expected request log lines"
    formatters = [JsonFormatter(), TextFormatter()]
    for record in caplog.records:
        lines = [formatter.format(record) for formatter in formatters]
        lines.append(json.dumps(vars(record), default=str))
        for line in lines:
            for secret in secrets_seen:
                assert secret not in line, (record.name, line[:300])


class BrokenCache:
    def add(self, *args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    incr = add


@pytest.mark.django_db
def test_a_down_throttle_cache_lets_requests_through(monkeypatch, rates, caplog, agent_client):
    rates(agent="1/min")
    monkeypatch.setattr(throttling, "counter", lambda: throttling.CacheCounter(BrokenCache()))
    assert [agent_client.get(URL).status_code for _ in range(3)] == [200, 200, 200]
    assert "throttle store unavailable" in caplog.text
