from rest_framework import serializers

from bugtracker.serializers import UnknownFieldsRefused
from reports.serializers import StrictBooleanField, StrictCharField

from .models import EventType, Webhook, WebhookAttempt, WebhookDelivery

EVENT_TYPES_HELP = "Event types to receive: " + ", ".join(f"`{t}`" for t in EventType.values) + "."


class WebhookSerializer(serializers.ModelSerializer):
    """A subscription as shown after its creation: never its secret."""

    class Meta:
        model = Webhook
        fields = [
            "id",
            "url",
            "event_types",
            "active",
            "description",
            "created_by",
            "created_at",
            "updated_at",
            "failing_since",
            "disabled_at",
            "disabled_reason",
        ]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (`whsec_…`), shown in this response only."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=EventType.choices)

    def __init__(self, **kwargs):
        super().__init__(
            min_length=1, max_length=len(EventType.values), help_text=EVENT_TYPES_HELP, **kwargs
        )


class WebhookCreateSerializer(UnknownFieldsRefused):
    url = serializers.URLField(
        max_length=2000, help_text="http or https; must reach a public address."
    )
    event_types = EventTypesField()
    active = StrictBooleanField(required=False, default=True)
    description = StrictCharField(max_length=300, required=False, allow_blank=True, default="")


class WebhookUpdateSerializer(UnknownFieldsRefused):
    url = serializers.URLField(max_length=2000, required=False)
    event_types = EventTypesField(required=False)
    active = StrictBooleanField(required=False)
    description = StrictCharField(max_length=300, required=False, allow_blank=True)


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "response_status",
            "response_body",
            "error",
            "succeeded",
        ]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.SerializerMethodField(
        help_text="The `webhook-id` header: the same on every try."
    )
    attempts = WebhookAttemptSerializer(source="tries", many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook_id",
            "event_type",
            "report_id",
            "event_at",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_webhook_id(self, delivery) -> str:
        return delivery.message_id
