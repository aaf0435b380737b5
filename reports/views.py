"""The reports API (/api/bug-reports): list, read, submit, change, history, attempts,
curation and the summary. The claim actions (views_claims.py) and the context bundle
(views_context.py) are mixins the viewset composes; the changes feed is views_feed.py."""

import uuid

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from bugtracker.domain import NotFound, PreconditionFailed
from bugtracker.fields import chosen_fields, chosen_view, fields_parameters
from bugtracker.http import claim_token, etag_for, if_match_version
from bugtracker.idempotency import idempotent
from bugtracker.models import Role
from bugtracker.pagination import Key, KeysetPagination
from bugtracker.permissions import IsAdmin, IsAgent, IsReporter, caller_id, caller_role, is_admin
from bugtracker.schema import CLAIM_TOKEN, IDEMPOTENCY_KEY, IF_MATCH, problems
from dedup.curation import report_merge, report_split
from dedup.serializers import MergeSerializer
from telemetry.context import submission_context

from . import services
from .errors import AdminRequired, TransitionNotAllowed
from .filters import BugReportFilter
from .models import BugReport
from .selectors import report_attempts, report_events, report_list, report_with_counts
from .serializers import (
    REPORT_VIEW_FIELDS,
    REPORT_VIEWS,
    AttemptSerializer,
    BugReportCreateSerializer,
    BugReportSerializer,
    BugReportUpdateSerializer,
    EventCreateSerializer,
    EventSerializer,
    report_columns,
)
from .summary import report_summary
from .views_claims import TOKEN_PROBLEMS, ClaimActions
from .views_context import ContextAction

ASC, DESC = False, True
ORDERINGS = {
    "priority": [
        Key("severity_rank", ASC, "int"),
        Key("sla_due_at", ASC, "dt"),
        Key("created_at", ASC, "dt"),
        Key("id", ASC, "uuid"),
    ],
    "created_at": [Key("created_at", ASC, "dt"), Key("id", ASC, "uuid")],
    "-created_at": [Key("created_at", DESC, "dt"), Key("id", DESC, "uuid")],
    "-updated_at": [Key("updated_at", DESC, "dt"), Key("id", DESC, "uuid")],
    "sla_due_at": [Key("sla_due_at", ASC, "dt"), Key("id", ASC, "uuid")],
    "-occurrences": [
        Key("group_occurrences", DESC, "int"),
        Key("created_at", DESC, "dt"),
        Key("id", DESC, "uuid"),
    ],
}
ATTEMPT_ORDER = [Key("started_at", ASC, "dt"), Key("id", ASC, "int")]

# A report's history pages oldest first, like the reports list pages by its ordering.
SUBLIST_ORDERINGS = {
    "events": [Key("created_at", ASC, "dt"), Key("id", ASC, "int")],
}
REPORT_FIELD_NAMES = frozenset(field.name for field in BugReport._meta.concrete_fields)

_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
_NULLABLE_INT = {"type": "integer", "nullable": True}
SUMMARY_SCHEMA = {
    "type": "object",
    "required": [
        "total",
        "open",
        "done",
        "by_status",
        "by_severity",
        "sla_breached",
        "needs_human",
        "canonical",
    ],
    "properties": {
        "generated_at": {"type": "string", "format": "date-time"},
        "total": {"type": "integer", "description": "Every report, duplicates included."},
        "open": {"type": "integer"},
        "done": {"type": "integer"},
        "by_status": _COUNTS,
        "by_severity": _COUNTS,
        "by_status_severity": {"type": "object", "additionalProperties": _COUNTS},
        "sla_breached": {"type": "integer"},
        "needs_human": {
            "type": "integer",
            "description": "Open reports out of claim-next until a human clears `needs_human`.",
        },
        "canonical": {"type": "integer", "description": "Reports that are not duplicates."},
        "duplicates": {"type": "integer"},
        "open_incidents": {
            "type": "integer",
            "description": "Open canonical reports (duplicates not counted): what the "
            "BACKLOG_ALERT_MAX_OPEN alert counts.",
        },
        "oldest_open_at": {"type": "string", "format": "date-time", "nullable": True},
        "oldest_open_age_seconds": _NULLABLE_INT,
        "claims_live": {"type": "integer", "description": "Reports under a lease not expired."},
        "top_groups": {"type": "array", "items": {"type": "object"}},
        "backlog_alerts": {"type": "array", "items": {"type": "string"}},
    },
}

ORDERING_PARAM = OpenApiParameter(
    "ordering",
    enum=list(ORDERINGS),
    default="priority",
    description="`priority` is severity, then SLA due time, then age.",
)


def _with_request_context(data: dict, request) -> dict:
    """Fill trace/request/release ids the body left out from the request's own context."""
    context = submission_context(request)
    for field in ("trace_id", "request_id", "release_sha"):
        if not data.get(field) and context.get(field):
            data[field] = context[field]
    data["telemetry"] = {**_storable(context.get("telemetry", {})), **data.get("telemetry", {})}
    return data


def _storable(value):
    """Request headers may carry NUL (a WSGI server that lets it through), which no database
    stores; the body's own fields are refused for it by the parser instead."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


@extend_schema_view(
    list=extend_schema(
        summary="List reports",
        description=(
            "Cursor-paginated (stable while reports arrive). Canonical reports only unless "
            "`include_duplicates=true` or `duplicate_of` is given. An invalid filter value is a "
            "400 naming the parameter."
        ),
        parameters=[ORDERING_PARAM, *fields_parameters(REPORT_VIEW_FIELDS)],
        responses={200: BugReportSerializer(many=True), **problems(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="One report",
        description="The report with `ETag` set to its version.",
        parameters=fields_parameters(REPORT_VIEW_FIELDS),
        responses={200: BugReportSerializer, **problems(400, 401, 403, 404)},
    ),
)
class BugReportViewSet(
    ClaimActions,
    ContextAction,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = BugReportSerializer
    filterset_class = BugReportFilter
    pagination_class = KeysetPagination
    permission_classes = [IsAgent]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        queryset = report_list()
        if caller_role(self.request) == Role.REPORTER:
            # A reporter reads back what it submitted, and nothing else.
            queryset = queryset.filter(reporter_id=caller_id(self.request))
        if self.action == "list":
            # The cursor reads the sort keys off the last row: load them too.
            keys = [k.name for k in self.get_ordering_keys() if k.name in REPORT_FIELD_NAMES]
            queryset = queryset.only(*report_columns(self.shape()[1]), *keys)
        return queryset

    def shape(self) -> tuple[str, list[str]]:
        """(view, fields) this request asked for with `view=` and `fields=` (list, detail)."""
        if not hasattr(self, "_shape"):
            view = chosen_view(self.request, REPORT_VIEW_FIELDS)
            self._shape = view, chosen_fields(self.request, REPORT_VIEW_FIELDS[view])
        return self._shape

    def get_permissions(self):
        if self.action == "create" and caller_role(self.request) is None:
            return [AllowAny()] if settings.BUGTRACKER_ANONYMOUS_SUBMIT else [IsReporter()]
        if self.action in ("create", "list", "retrieve"):
            return [IsReporter()]
        return super().get_permissions()

    def get_serializer_context(self):
        context = {**super().get_serializer_context(), "now": timezone.now()}
        if self.action in ("list", "retrieve"):
            context["fields"] = self.shape()[1]
        return context

    def get_serializer_class(self):
        if self.action in ("list", "retrieve"):
            return REPORT_VIEWS[self.shape()[0]]
        return super().get_serializer_class()

    def get_ordering_keys(self):
        if self.action == "attempts":
            return ATTEMPT_ORDER
        if self.action in SUBLIST_ORDERINGS:
            return SUBLIST_ORDERINGS[self.action]
        ordering = self.request.query_params.get("ordering", "priority")
        if ordering not in ORDERINGS:
            raise ValidationError({"ordering": [f"Must be one of: {', '.join(ORDERINGS)}."]})
        return ORDERINGS[ordering]

    def report_id(self) -> uuid.UUID:
        try:
            return uuid.UUID(str(self.kwargs[self.lookup_field]))
        except ValueError:
            raise NotFound(f"No bug report {self.kwargs[self.lookup_field]!r}.") from None

    def get_object(self):
        # get(), not first(): no ORDER BY to compile for a primary-key lookup (hot path).
        queryset = self.get_queryset()  # a reporter's own reports only
        if self.action == "retrieve":
            queryset = queryset.only(*report_columns(self.shape()[1]))
        else:
            queryset = queryset.select_related("dedup_group")
        try:
            return queryset.get(pk=self.report_id())
        except BugReport.DoesNotExist:
            raise NotFound(f"No bug report {self.kwargs[self.lookup_field]}.") from None

    def report_response(self, report_id):
        """The report as GET shows it now, with its ETag (the answer of every write)."""
        self.kwargs[self.lookup_field] = str(report_id)
        report = self.get_object()
        response = Response(self.get_serializer(report).data)
        response["ETag"] = etag_for(report.version)
        return response

    def retrieve(self, request, *args, **kwargs):
        return self.report_response(self.report_id())

    @extend_schema(
        summary="Submit a report",
        description=(
            "Anyone with a key may submit; anonymous submission (source forced to `user`) when "
            "BUGTRACKER_ANONYMOUS_SUBMIT is on. Trace id, request id and release come from the "
            "request when the body has none. Deduplication runs in the same request."
        ),
        request=BugReportCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        # 409 (idempotent request in progress) and its Retry-After: bugtracker/schema.py adds
        # them to every operation that takes an Idempotency-Key.
        responses={201: BugReportSerializer, **problems(400, 401, 403, 413, 415, 422)},
        auth=[{"ApiKey": []}, {}],
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        serializer = BugReportCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        fingerprint = data.pop("fingerprint", None)
        if caller_role(request) is None:
            data["source"] = "user"
        if not data.get("reporter_id") and caller_role(request) is not None:
            data["reporter_id"] = caller_id(request)
        data = _with_request_context(data, request)
        report = services.report_create(
            actor=caller_id(request), data=data, client_fingerprint=fingerprint
        )
        # The report is shown as its own transaction left it, plus its counts, without
        # reading it back through report_list() (that was a fifth of a submission's cost).
        location = f"/api/bug-reports/{report.pk}"
        response = Response(
            self.get_serializer(report_with_counts(report)).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )
        response["ETag"] = etag_for(report.version)
        return response

    @extend_schema(
        summary="Change a report",
        description=(
            "Triage fields, `status` (lifecycle rules: an illegal move is a 409), assignee, "
            "resolution notes, commits, automation, metadata. `If-Match` guards against lost "
            "updates (412). While someone else holds a live claim, send its `X-Claim-Token` "
            "(admins may override)."
        ),
        request=BugReportUpdateSerializer,
        parameters=[IF_MATCH, CLAIM_TOKEN],
        responses={
            200: BugReportSerializer,
            **problems(
                400,
                401,
                403,
                404,
                409,
                412,
                413,
                415,
                428,
                examples=(
                    *TOKEN_PROBLEMS,
                    TransitionNotAllowed,
                    PreconditionFailed,
                    AdminRequired,
                ),
            ),
        },
    )
    def partial_update(self, request, *args, **kwargs):
        report_id = self.report_id()
        serializer = BugReportUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.report_update(
            report_id=report_id,
            actor=caller_id(request),
            data=dict(serializer.validated_data),
            expected_version=if_match_version(request),
            claim_token=claim_token(request),
            is_admin=is_admin(request),
        )
        return self.report_response(report_id)

    @extend_schema(
        methods=["GET"],
        summary="A report's history",
        description="Every event of the report, oldest first, cursor-paginated like the reports list.",
        responses={200: EventSerializer(many=True), **problems(400, 401, 403, 404)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Append a note or agent log",
        request=EventCreateSerializer,
        parameters=[CLAIM_TOKEN],
        responses={
            201: EventSerializer,
            **problems(400, 401, 403, 404, 413, 415, examples=TOKEN_PROBLEMS),
        },
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None)
    def events(self, request, *args, **kwargs):
        report_id = self.report_id()
        if request.method == "GET":
            if not BugReport.objects.filter(pk=report_id).exists():
                raise NotFound(f"No bug report {report_id}.")
            page = self.paginate_queryset(report_events(report_id=report_id))
            return self.get_paginated_response(EventSerializer(page, many=True).data)
        serializer = EventCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = services.report_add_event(
            report_id=report_id,
            kind=serializer.validated_data.get("kind", "agent_log"),
            actor=caller_id(request),
            message=serializer.validated_data["message"],
            data=serializer.validated_data.get("data"),
            claim_token=claim_token(request),
            is_admin=is_admin(request),
        )
        return Response(EventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="A report's attempts",
        description=(
            "Every claim of the report, oldest first, whoever held it (agents and the worker): "
            "holder, claim_epoch, purpose (`fix`/`verify`), started_at, ended_at, outcome "
            "(`running`, `resolved`, `released`, `expired`, `taken_over` — by the holder's "
            "re-claim or an admin's resolve — and for worker runs `failed`, `timed_out`, "
            "`crashed`), the release reason and note, and for worker runs exit_code and "
            "output_tail. `verification` marks a fix that was verified (`passed`/`failed`). "
            "Cursor-paginated."
        ),
        responses={200: AttemptSerializer(many=True), **problems(400, 401, 403, 404)},
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def attempts(self, request, *args, **kwargs):
        report_id = self.report_id()
        if not BugReport.objects.filter(pk=report_id).exists():
            raise NotFound(f"No bug report {report_id}.")
        page = self.paginate_queryset(report_attempts(report_id=report_id))
        return self.get_paginated_response(AttemptSerializer(page, many=True).data)

    @extend_schema(
        summary="Merge into another report (admin)",
        description=(
            "This report and its duplicates become duplicates of `into`'s canonical report (a "
            "duplicate given as `into` stands for its canonical); occurrences add up and later "
            "occurrences of this report's fingerprint go to that canonical. A duplicate given "
            "in the path moves alone. Merging into itself or its own duplicate: 409."
        ),
        request=MergeSerializer,
        responses={200: BugReportSerializer, **problems(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin], filterset_class=None)
    def merge(self, request, *args, **kwargs):
        serializer = MergeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = report_merge(
            report_id=self.report_id(),
            into_id=serializer.validated_data["into"],
            actor=caller_id(request),
        )
        return self.report_response(report.pk)

    @extend_schema(
        summary="Split a duplicate off (admin)",
        description=(
            "Detaches a duplicate into a canonical report of its own group. The split stays: "
            "later occurrences of its fingerprint go to it. Not a duplicate: 409."
        ),
        request=None,
        responses={200: BugReportSerializer, **problems(401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin], filterset_class=None)
    def split(self, request, *args, **kwargs):
        report = report_split(report_id=self.report_id(), actor=caller_id(request))
        return self.report_response(report.pk)

    @extend_schema(
        summary="The human glance",
        description="Counts by status and severity, open, done, SLA breaches, oldest open, "
        "duplicates, open incidents (open canonical reports), top groups and backlog alerts; "
        "the same object as `manage.py bugstatus --json`.",
        responses={
            200: OpenApiResponse(SUMMARY_SCHEMA, description="Summary object."),
            **problems(401, 403),
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def summary(self, request, *args, **kwargs):
        return Response(report_summary())
