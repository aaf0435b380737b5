"""The framework floor: the least a DRF endpoint in this server can do to store a report.

Same server, middleware, authentication (the same API key lookup), throttle, JSON parser
and renderer as `POST /api/bug-reports`, then one bare INSERT: what is left of a request
when the tracker itself does nothing. Ingest throughput is reported as a ratio to this.
"""

from datetime import timedelta

from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from bugtracker.permissions import IsReporter
from reports.models import BugReport


class FloorView(APIView):
    permission_classes = [IsReporter]

    def post(self, request):
        now = timezone.now()
        report = BugReport.objects.create(
            title=str(request.data.get("title", ""))[:300],
            created_at=now,
            updated_at=now,
            sla_due_at=now + timedelta(hours=72),
        )
        return Response({"id": str(report.pk)}, status=201)
