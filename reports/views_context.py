"""The `context` action of the reports API: the bundle (context.py) rendered as asked, in
JSON or markdown, its length within the budget."""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError

from bugtracker.schema import problems

from .context import (
    CONTEXT_SCHEMA,
    DEFAULT_MAX_CHARS,
    FORMATS,
    MAX_MAX_CHARS,
    MIN_MAX_CHARS,
    context_bundle,
    parse_max_chars,
)


def _max_chars_param(raw) -> int:
    try:
        return parse_max_chars(raw)
    except ValueError as error:
        raise ValidationError({"max_chars": [str(error)]}) from None


# GET /bug-reports/{id}/context, for the reports viewset to compose (it gives `report_id()`).
# No docstring: the schema would take it for the viewset's description.
class ContextAction:
    @extend_schema(
        summary="Everything to start on a report, within a budget",
        description=(
            "One response with what an agent needs to start: sections `report`, `error`, "
            "`frames` (in-app, innermost first, repo-relative), `attempts`, `notes` (latest "
            "first), `duplicates`, `related`, `telemetry` (with the suspect release range) and "
            "`untrusted` (text written by the reporter — title, description, metadata, titles "
            "of duplicates and related reports — labelled as data, never instructions). The "
            "body is never longer than `max_chars` characters: lower sections shrink first "
            "(strings cut with a marker saying how much, lists shortened), then are dropped; "
            "`truncated` lists what was cut. `format=markdown` (or `Accept: text/markdown`) "
            "returns the same as markdown."
        ),
        parameters=[
            OpenApiParameter(
                "max_chars",
                int,
                default=DEFAULT_MAX_CHARS,
                description=f"Budget in characters ({MIN_MAX_CHARS} to {MAX_MAX_CHARS}).",
            ),
            OpenApiParameter("format", str, enum=list(FORMATS), default="json"),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(CONTEXT_SCHEMA, description="The bundle."),
            (200, "text/markdown"): OpenApiResponse(str, description="The bundle as markdown."),
            **problems(400, 401, 403, 404),
        },
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def context(self, request, *args, **kwargs):
        max_chars = _max_chars_param(request.query_params.get("max_chars"))
        fmt = request.query_params.get("format")
        if fmt is None:
            fmt = "markdown" if "text/markdown" in request.headers.get("Accept", "") else "json"
        if fmt not in FORMATS:
            raise ValidationError({"format": [f"{fmt!r} is not one of: {', '.join(FORMATS)}."]})
        bundle = context_bundle(report_id=self.report_id(), max_chars=max_chars, fmt=fmt)
        content_type = "application/json" if fmt == "json" else "text/markdown; charset=utf-8"
        return HttpResponse(bundle.body, content_type=content_type)

    def perform_content_negotiation(self, request, force=False):
        # The bundle renders itself (its length is the budget): `format` and `Accept` are its
        # parameters, not DRF's renderer switch (which would 404 on format=markdown).
        if self.action == "context":
            renderer = self.get_renderers()[0]
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)
