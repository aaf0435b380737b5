import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import GenericAPIView

from bugtracker.domain import NotFound
from bugtracker.pagination import Key, KeysetPagination
from bugtracker.permissions import IsAgent
from bugtracker.schema import problems
from reports.models import BugReport

from .models import AgentRun
from .serializers import AgentRunSerializer

# Oldest first, like a report's events page.
RUN_ORDERING = [Key("started_at", kind="dt"), Key("id", kind="int")]


class ReportRunsView(GenericAPIView):
    """GET /api/bug-reports/{id}/runs: a report's remediation runs (its path and operation
    id are those it had as an action of the reports' viewset)."""

    permission_classes = [IsAgent]
    queryset = AgentRun.objects.all()
    serializer_class = AgentRunSerializer
    pagination_class = KeysetPagination
    filterset_class = None

    def get_ordering_keys(self):
        return RUN_ORDERING

    @extend_schema(
        operation_id="bug_reports_runs_list",
        tags=["bug-reports"],
        summary="A report's remediation runs",
        description=(
            "Every run of the remediation worker on this report, oldest first, "
            "cursor-paginated like the reports list."
        ),
        parameters=[OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: AgentRunSerializer(many=True), **problems(400, 401, 403, 404)},
    )
    def get(self, request, id):
        try:
            report_id = uuid.UUID(str(id))
        except ValueError:
            raise NotFound(f"No bug report {id!r}.") from None
        if not BugReport.objects.filter(pk=report_id).exists():
            raise NotFound(f"No bug report {report_id}.")
        page = self.paginate_queryset(self.get_queryset().filter(report_id=report_id))
        return self.get_paginated_response(AgentRunSerializer(page, many=True).data)
