import re

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from bugtracker.pagination import Key, KeysetPagination
from bugtracker.permissions import IsAdmin, IsAgent, caller_id
from bugtracker.schema import problems
from reports.serializers import BugReportSerializer

from . import services
from .filters import ReleaseFilter
from .selectors import TRACE_REPORTS_LIMIT, release_list, reports_on_trace
from .serializers import ReleaseCreateSerializer, ReleaseSerializer

_TRACE_ID = re.compile(r"[\x21-\x7e]{1,64}")


class ReleaseListView(generics.GenericAPIView):
    """The release registry: which commit was deployed to which environment, and when."""

    serializer_class = ReleaseSerializer
    filterset_class = ReleaseFilter
    pagination_class = KeysetPagination

    def get_permissions(self):
        return [IsAdmin()] if self.request.method == "POST" else [IsAgent()]

    def get_queryset(self):
        return release_list()

    def get_ordering_keys(self):
        return [Key("deployed_at", True, "dt"), Key("id", True, "int")]

    @extend_schema(
        summary="List deployments",
        operation_id="telemetry_releases_list",
        description="Latest deployment first, cursor-paginated. Agents and admins.",
        responses={200: ReleaseSerializer(many=True), **problems(400, 401, 403)},
    )
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Record a deployment",
        operation_id="telemetry_releases_create",
        description=(
            "Admins. `deployed_at` defaults to now. A release is one sha in one environment: "
            "recording it again is idempotent and answers 200 with the row as first recorded "
            "(its `id`, `version` and `deployed_at`), whatever the repeat says, so a deploy "
            "script may record on every run. The enrichment job fills reports' missing "
            "`release_sha` from these rows."
        ),
        request=ReleaseCreateSerializer,
        responses={
            201: ReleaseSerializer,
            200: OpenApiResponse(ReleaseSerializer, description="Already recorded: the first row."),
            **problems(400, 401, 403, 413, 415),
        },
    )
    def post(self, request):
        serializer = ReleaseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        release = services.release_record(**serializer.validated_data, actor=caller_id(request))
        code = status.HTTP_201_CREATED if release.created else status.HTTP_200_OK
        return Response(ReleaseSerializer(release).data, status=code)


class TraceReportsView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(
        summary="Reports on one trace",
        operation_id="telemetry_trace_reports",
        description=(
            "Every report whose `trace_id` is this one, duplicates included, oldest first, as a "
            f"list (at most {TRACE_REPORTS_LIMIT}; page through longer traces with "
            "`GET /api/bug-reports?trace_id=…&include_duplicates=true`). "
            "An unknown trace is an empty list."
        ),
        parameters=[
            OpenApiParameter(
                "trace_id",
                location=OpenApiParameter.PATH,
                type=str,
                description="The W3C trace id (32 lowercase hex digits) the reports carry.",
            )
        ],
        responses={200: BugReportSerializer(many=True), **problems(400, 401, 403)},
    )
    def get(self, request, trace_id: str):
        if not _TRACE_ID.fullmatch(trace_id):
            raise ValidationError({"trace_id": ["Must be 1 to 64 visible ASCII characters."]})
        reports = reports_on_trace(trace_id=trace_id)
        context = {"request": request, "now": timezone.now()}
        return Response(BugReportSerializer(reports, many=True, context=context).data)
