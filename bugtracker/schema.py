"""OpenAPI pieces shared by every app: the problem-details shape and its responses."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

PROBLEM = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.CharField(help_text="A URN naming the kind of problem."),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="For validation problems: field name → messages.",
        ),
    },
)

DESCRIPTIONS = {
    400: "Invalid input (the field is named in `errors`).",
    401: "No API key, or an invalid or revoked one.",
    403: "The key's role may not do this.",
    404: "No such report (unknown or malformed id).",
    409: "Conflict with the report's state (lifecycle, claim or lease).",
    412: "If-Match names a stale version.",
    413: "Body over 1 MiB.",
    415: "Body is not JSON.",
    422: "Idempotency-Key reused with another body.",
    429: "Throttled; see Retry-After.",
    503: "Database unavailable or busy; see Retry-After.",
}


def problems(*codes: int) -> dict:
    """Problem responses for `codes`, plus the ones any call can return."""
    every_call = (429, 503)
    return {
        code: OpenApiResponse(PROBLEM, description=DESCRIPTIONS.get(code, "Problem."))
        for code in sorted(set(codes) | set(every_call))
    }


IF_MATCH = OpenApiParameter(
    "If-Match",
    location=OpenApiParameter.HEADER,
    required=False,
    description='The report version from its ETag (e.g. "3"); a stale one is refused with 412.',
)
CLAIM_TOKEN = OpenApiParameter(
    "X-Claim-Token",
    location=OpenApiParameter.HEADER,
    required=False,
    description="The token from the claim, needed while someone holds a live claim (admins may omit).",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Retry-safe submission: the same key and body within 24 h returns the first response "
        "(header Idempotent-Replayed: true); another body is a 422."
    ),
)
