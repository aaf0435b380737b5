"""GET /api/events: the changes feed's view (the feed's reads are in feed.py)."""

import time

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from bugtracker.fields import comma_values
from bugtracker.pagination import KeysetPagination
from bugtracker.permissions import IsAgent
from bugtracker.schema import problems
from bugtracker.wakeups import Channel, release_connection

from .feed import Position, feed_page
from .models import EventKind
from .serializers import EventSerializer

FEED_WAIT_MAX = 60
FEED = Channel("bugtracker_events", listen=False)
# Followers look again this often while they wait: a NOTIFY per event would serialise every
# writing transaction's commit (see the README's "Changes feed").
FEED_POLL_SECONDS = 0.25


class FeedEventSerializer(EventSerializer):
    class Meta(EventSerializer.Meta):
        fields = ["id", "report_id", "kind", "actor", "message", "data", "created_at"]
        read_only_fields = fields

    report_id = serializers.UUIDField(read_only=True)


FEED_RESPONSE = inline_serializer(
    name="EventFeedPage",
    fields={
        "results": FeedEventSerializer(many=True),
        "next": serializers.URLField(help_text="The cursor to resume from, always present."),
    },
)


class EventFeedView(GenericAPIView):
    """GET /api/events: every event of every report, in commit order, with long-poll."""

    permission_classes = [IsAgent]
    serializer_class = FeedEventSerializer
    pagination_class = None
    filterset_class = None

    @extend_schema(
        summary="Changes feed",
        description=(
            "Every event of every report in commit order, `page_size` at a time (default 50, "
            "max 500). No `after`: from the first event. Every page carries `next`, also when "
            "it is the last one so far: the cursor to resume from. A follower sees every event "
            "exactly once, in order, while writers commit concurrently. `kind` (comma list) "
            "keeps only those kinds. `wait` (0-60 s) long-polls an empty page until an event "
            "arrives or the wait ends (then an empty page, with `next`)."
        ),
        parameters=[
            OpenApiParameter("after", str, description="Cursor: a previous page's `next`."),
            OpenApiParameter("kind", str, description="Comma list of event kinds."),
            OpenApiParameter("wait", int, description="Seconds to wait for events (0-60)."),
            OpenApiParameter("page_size", int, description="Events per page (1-500, default 50)."),
        ],
        responses={200: FEED_RESPONSE, **problems(400, 401, 403)},
    )
    def get(self, request, *args, **kwargs):
        params = request.query_params
        try:
            after = Position.decode(params["after"]) if params.get("after") else Position()
        except ValueError as error:
            raise ValidationError({"after": [str(error)]}) from None
        kinds = comma_values(request, "kind")
        unknown = [kind for kind in kinds if kind not in EventKind.values]
        if unknown:
            raise ValidationError({"kind": [f"Unknown kind(s): {', '.join(unknown)}."]})
        limit = KeysetPagination().get_page_size(request)
        wait = _bounded_int(params.get("wait"), "wait", 0, FEED_WAIT_MAX)
        page, position = feed_page(after=after, kinds=kinds, limit=limit)
        if not page and wait:
            deadline = time.monotonic() + min(wait, settings.LONG_POLL_MAX_SECONDS)
            waiter = FEED.park()
            try:
                while not page and time.monotonic() < deadline:
                    release_connection()
                    waiter.wait(min(FEED_POLL_SECONDS, deadline - time.monotonic()))
                    page, position = feed_page(after=position, kinds=kinds, limit=limit)
            finally:
                FEED.leave(waiter)
        next_url = replace_query_param(request.build_absolute_uri(), "after", position.encode())
        return Response({"results": FeedEventSerializer(page, many=True).data, "next": next_url})


def _bounded_int(raw, name: str, low: int, high: int) -> int:
    if raw in (None, ""):
        return low
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError({name: [f"A whole number from {low} to {high}."]})
    return int(raw)
