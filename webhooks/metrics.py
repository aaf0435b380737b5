"""Webhook gauges on /metrics, read when scraped: one GROUP BY over deliveries."""

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from .models import DeliveryStatus, Webhook, WebhookDelivery


def collect() -> Iterator[Metric]:
    deliveries = GaugeMetricFamily(
        "bugtracker_webhook_deliveries",
        "Webhook deliveries by result (pending: waiting for a first or next try).",
        labels=["result"],
    )
    counts = dict.fromkeys(DeliveryStatus.values, 0)
    for row in WebhookDelivery.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    for result, count in counts.items():
        deliveries.add_metric([result], count)
    yield deliveries
    yield GaugeMetricFamily(
        "bugtracker_webhooks_active",
        "Webhook subscriptions turned on.",
        Webhook.objects.filter(active=True).count(),
    )
