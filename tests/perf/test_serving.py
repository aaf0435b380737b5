import importlib.util
import os
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def load_gunicorn_conf(monkeypatch, **environ):
    # The config sets defaults in os.environ for the workers: keep them out of this process.
    monkeypatch.setattr(os, "environ", os.environ.copy())
    for name in ("HOST", "PORT", "BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS", "DB_POOL_MAX"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorn_takes_workers_threads_and_address_from_the_environment(monkeypatch):
    conf = load_gunicorn_conf(
        monkeypatch, HOST="0.0.0.0", PORT="9000", WEB_CONCURRENCY="3", GUNICORN_THREADS="8"
    )
    assert conf.bind == ["0.0.0.0:9000"]
    # 8 threads for ordinary requests, 64 more for long-polls parked asleep (WAIT_SLOTS).
    assert (conf.workers, conf.threads, conf.worker_class) == (3, 72, "gthread")
    conf = load_gunicorn_conf(monkeypatch, GUNICORN_THREADS="8", WAIT_SLOTS="0")
    assert conf.threads == 8
    assert conf.wsgi_app == "bugtracker.wsgi:application"


def test_gunicorn_defaults_serve_locally_with_at_least_two_workers(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch, GUNICORN_THREADS="1")
    assert conf.bind == ["127.0.0.1:8000"]
    assert conf.workers >= 2
    assert conf.worker_class == "sync"


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:No directory at")
def test_docs_page_assets_are_served_by_the_app_itself():
    client = Client()
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn" not in html.lower()
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in html
    asset = client.get(bundle)
    assert asset.status_code == 200
    assert b"".join(asset.streaming_content).startswith(b"/*")
