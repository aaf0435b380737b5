import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from bugtracker.domain import NotFound
from bugtracker.permissions import IsAgent
from bugtracker.schema import problems
from reports.models import BugReport

from .models import AgentRun
from .serializers import AgentRunSerializer


class ReportRunsView(APIView):
    """GET /api/bug-reports/{id}/runs: a report's remediation runs (its path and operation
    id are those it had as an action of the reports' viewset)."""

    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="bug_reports_runs_list",
        tags=["bug-reports"],
        summary="A report's remediation runs",
        description="Every run of the remediation worker on this report, oldest first.",
        parameters=[OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: AgentRunSerializer(many=True), **problems(401, 403, 404)},
    )
    def get(self, request, id):
        try:
            report_id = uuid.UUID(str(id))
        except ValueError:
            raise NotFound(f"No bug report {id!r}.") from None
        if not BugReport.objects.filter(pk=report_id).exists():
            raise NotFound(f"No bug report {report_id}.")
        runs = AgentRun.objects.filter(report_id=report_id).order_by("started_at", "id")
        return Response(AgentRunSerializer(runs, many=True).data)
