from django.db.models import Prefetch

from .models import Webhook, WebhookAttempt, WebhookDelivery


def webhook_list():
    return Webhook.objects.all()


def delivery_list(*, webhook_id):
    """A webhook's deliveries with their tries (two queries per page)."""
    return WebhookDelivery.objects.filter(webhook_id=webhook_id).prefetch_related(
        Prefetch("tries", queryset=WebhookAttempt.objects.order_by("number"))
    )
