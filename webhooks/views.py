"""The webhook admin API: subscriptions and their deliveries (admins only)."""

import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from bugtracker.domain import NotFound
from bugtracker.pagination import Key, KeysetPagination
from bugtracker.permissions import IsAdmin, caller_id
from bugtracker.schema import problems

from . import services
from .selectors import delivery_list, webhook_list
from .serializers import (
    WebhookCreatedSerializer,
    WebhookCreateSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
)

SIGNING = (
    'Deliveries follow Standard Webhooks: a JSON POST `{"type", "timestamp", "data"}` '
    "(report events carry `data.report` in the compact view, as it stands at the first try) "
    "with headers `webhook-id` (the same on every try: drop repeats), `webhook-timestamp` and "
    "`webhook-signature` (`v1,` HMAC-SHA256 with the `whsec_` secret; any Standard Webhooks "
    "library verifies it). A 2xx answer is success; anything else, a timeout or a redirect is "
    "retried with growing delays up to WEBHOOK_MAX_ATTEMPTS tries. An endpoint failing for "
    "WEBHOOK_DISABLE_AFTER_HOURS is turned off (`webhook.disabled` event). URLs that resolve "
    "to private, loopback or link-local addresses are refused, at registration and before "
    "every try."
)


@extend_schema_view(
    list=extend_schema(
        summary="List webhooks",
        description="Admins. Oldest first, cursor-paginated; secrets are never shown again.",
        responses={200: WebhookSerializer(many=True), **problems(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="One webhook", responses={200: WebhookSerializer, **problems(401, 403, 404)}
    ),
    destroy=extend_schema(
        summary="Delete a webhook",
        description="Admins. Its pending deliveries go with it.",
        responses={204: None, **problems(401, 403, 404)},
    ),
)
class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WebhookSerializer
    pagination_class = KeysetPagination
    permission_classes = [IsAdmin]
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return webhook_list()

    def get_ordering_keys(self):
        if self.action == "deliveries":
            return [Key("created_at", True, "dt"), Key("id", True, "uuid")]
        return [Key("created_at", False, "dt"), Key("id", False, "uuid")]

    def get_object(self):
        raw = self.kwargs[self.lookup_field]
        try:
            webhook_id = uuid.UUID(str(raw))
        except ValueError:
            raise NotFound(f"No webhook {raw!r}.") from None
        return services.webhook_get(webhook_id=webhook_id)

    @extend_schema(
        summary="Subscribe a URL to events",
        description="Admins. " + SIGNING + " The `secret` is in this response only.",
        request=WebhookCreateSerializer,
        responses={201: WebhookCreatedSerializer, **problems(400, 401, 403, 413, 415)},
    )
    def create(self, request):
        serializer = WebhookCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook = services.webhook_create(**serializer.validated_data, actor=caller_id(request))
        return Response(WebhookCreatedSerializer(webhook).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a webhook",
        description=(
            "Admins. `active: false` stops it (its pending deliveries fail); `active: true` "
            "turns it back on and clears its failure streak."
        ),
        request=WebhookUpdateSerializer,
        responses={200: WebhookSerializer, **problems(400, 401, 403, 404, 413, 415)},
    )
    def partial_update(self, request, pk=None):
        webhook = self.get_object()
        serializer = WebhookUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook = services.webhook_update(webhook_id=webhook.pk, data=serializer.validated_data)
        return Response(WebhookSerializer(webhook).data)

    def perform_destroy(self, instance):
        services.webhook_delete(webhook_id=instance.pk)

    @extend_schema(
        summary="A webhook's deliveries",
        description=(
            "Admins. Newest first, cursor-paginated; each with every try (`attempts`: when, "
            "how long, the status and the start of the body the endpoint answered, or why it "
            "could not be reached). `status`: `pending` (waiting for its next try), "
            "`succeeded`, `failed` (tries used up, or the endpoint was turned off)."
        ),
        responses={
            200: OpenApiResponse(WebhookDeliverySerializer(many=True)),
            **problems(400, 401, 403, 404),
        },
    )
    @action(detail=True, methods=["get"], serializer_class=WebhookDeliverySerializer)
    def deliveries(self, request, pk=None):
        webhook = self.get_object()
        page = self.paginate_queryset(delivery_list(webhook_id=webhook.pk))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
