"""Prometheus metrics: request counts and latencies by route template, `/metrics`, and the
hook through which domain apps add gauges read at scrape time.

Under gunicorn every worker process writes its counters to files in
`PROMETHEUS_MULTIPROC_DIR` (gunicorn.conf.py sets it up and cleans it); a scrape, answered by
whichever worker gets it, adds every process's files up. Without that directory (runserver,
`run_worker`, tests) the process's own registry is shown.

Domain gauges (open reports, leases, deliveries, ...) are not kept in processes at all: the
apps that own them register a function with `register_scrape_collector()`, called on every
scrape, which reads the database with a few aggregate queries.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from .errors import PROBLEM_CONTENT_TYPE, problem

logger = logging.getLogger("bugtracker.metrics")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
# Seconds; the API answers in milliseconds, long-polls (wait=) in up to a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "bugtracker_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "bugtracker_http_request_duration_seconds",
    "Time from the request entering the app to its response leaving it.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)

ScrapeCollector = Callable[[], Iterable[Metric]]
_scrape_collectors: list[ScrapeCollector] = []


def register_scrape_collector(collector: ScrapeCollector) -> None:
    """Call `collector()` on every scrape; it returns metric families (e.g. GaugeMetricFamily).
    Registering the same function twice (AppConfig.ready() may run twice) keeps one."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


# Route templates --------------------------------------------------------------------------

_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")
_PATH_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@functools.cache
def route_template(route: str) -> str:
    """`api/bug-reports/(?P<pk>[^/]+)/claim/?$` -> `/api/bug-reports/{pk}/claim`: the URL
    pattern that matched, never the path itself (ids would make a series per report)."""
    template = _NAMED_GROUP.sub(r"{\1}", route)
    template = _PATH_CONVERTER.sub(r"{\1}", template)
    template = template.replace("^", "").replace("$", "").replace("/?", "").replace("\\", "")
    return "/" + template.strip("/")


def route_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return UNMATCHED_ROUTE
    return route_template(match.route)


class RequestMetricsMiddleware:
    """Counts every response and its latency, labelled by route template, method, status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in METHODS else "other"
        labels = (route_label(request), method, str(response.status_code))
        REQUESTS.labels(*labels).inc()
        LATENCY.labels(*labels).observe(elapsed)
        return response


# The scrape -------------------------------------------------------------------------------


class _ScrapeTimeCollector:
    def collect(self):
        for collector in list(_scrape_collectors):
            name = getattr(collector, "__qualname__", repr(collector))
            try:
                yield from collector()
            except Exception:
                # One broken source must not hide the others (or the request counters).
                logger.exception("Metrics collector %s failed.", name)
                failed = GaugeMetricFamily(
                    "bugtracker_metrics_collector_failed",
                    "1 when a source of scrape-time gauges failed during this scrape.",
                    labels=["collector"],
                )
                failed.add_metric([name], 1)
                yield failed


def multiprocess_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    return path if path and os.path.isdir(path) else None


def exposition() -> bytes:
    """Everything a scrape returns, in the Prometheus text format."""
    path = multiprocess_dir()
    if path:
        processes = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(processes, path=path)
    else:
        processes = REGISTRY
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_ScrapeTimeCollector())
    return generate_latest(processes) + generate_latest(scrape)


def token_accepted(request) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), expected)


def metrics_view(request):
    """GET /metrics: the Prometheus text format; `Authorization: Bearer <METRICS_TOKEN>` when
    that setting is set."""
    if request.method not in ("GET", "HEAD"):
        body = problem(405, f"Method {request.method} is not allowed on /metrics.")
        return JsonResponse(
            body, status=405, content_type=PROBLEM_CONTENT_TYPE, headers={"Allow": "GET, HEAD"}
        )
    if not token_accepted(request):
        body = problem(401, "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.")
        return JsonResponse(
            body,
            status=401,
            content_type=PROBLEM_CONTENT_TYPE,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
