"""GET /api/: the API's entry points, read from its own OpenAPI description (one source)."""

import functools

from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .schema import problems

SCHEMA_URL = "/api/schema"
DOCS_URL = "/api/docs"

OPERATIONS = inline_serializer(
    name="EntryPointOperation",
    many=True,
    fields={
        "method": serializers.CharField(),
        "summary": serializers.CharField(),
        "roles": serializers.ListField(
            child=serializers.CharField(), help_text="Who may call it (`anonymous`: no key)."
        ),
    },
)
ENTRY_POINTS = inline_serializer(
    name="EntryPoint",
    many=True,
    fields={
        "path": serializers.CharField(help_text="With or without a trailing slash."),
        "operations": OPERATIONS,
    },
)
INDEX = inline_serializer(
    name="ApiIndex",
    fields={
        "title": serializers.CharField(),
        "version": serializers.CharField(),
        "description": serializers.CharField(),
        "schema": serializers.CharField(help_text="The OpenAPI 3 description."),
        "docs": serializers.CharField(help_text="The same, rendered."),
        "entry_points": ENTRY_POINTS,
    },
)


@functools.cache
def api_index() -> dict:
    """Built once per process from the generated schema, so it never drifts from the API."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    entry_points = []
    for path, operations in schema["paths"].items():
        listed = [
            {
                "method": method.upper(),
                "summary": operation.get("summary", ""),
                "roles": operation.get("x-roles", []),
            }
            for method, operation in operations.items()
            if isinstance(operation, dict) and "responses" in operation
        ]
        entry_points.append({"path": path.rstrip("/") or "/", "operations": listed})
    info = settings.SPECTACULAR_SETTINGS
    return {
        "title": info["TITLE"],
        "version": info["VERSION"],
        "description": info["DESCRIPTION"],
        "schema": SCHEMA_URL,
        "docs": DOCS_URL,
        "entry_points": entry_points,
    }


class ApiIndexView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The API's entry points",
        description=(
            "Where to start: every path with its operations, their summaries and the roles "
            "that may call them, plus the links to the OpenAPI description and its docs page."
        ),
        auth=[{}],
        responses={200: INDEX, **problems()},
    )
    def get(self, request):
        return Response(api_index())
