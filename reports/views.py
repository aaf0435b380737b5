import uuid

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from bugtracker.domain import InvalidInput, NotFound, PreconditionFailed
from bugtracker.fields import chosen_fields, chosen_view, fields_parameters
from bugtracker.http import etag_for, if_match_version
from bugtracker.idempotency import idempotent
from bugtracker.models import Role
from bugtracker.pagination import Key, KeysetPagination
from bugtracker.permissions import IsAdmin, IsAgent, IsReporter, caller_id, caller_role, is_admin
from bugtracker.schema import CLAIM_TOKEN, IDEMPOTENCY_KEY, IF_MATCH, problems
from dedup.curation import report_merge, report_split
from dedup.serializers import MergeSerializer
from telemetry.context import submission_context

from . import claims, services
from .context import (
    CONTEXT_SCHEMA,
    DEFAULT_MAX_CHARS,
    FORMATS,
    MAX_MAX_CHARS,
    MIN_MAX_CHARS,
    context_bundle,
    parse_max_chars,
)
from .errors import (
    AdminRequired,
    ClaimConflict,
    ClaimTokenMismatch,
    ClaimTokenRequired,
    LeaseLost,
    NotClaimable,
    OwnFixNotVerifiable,
    TransitionNotAllowed,
)
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
    ClaimNextSerializer,
    ClaimResponseSerializer,
    EventCreateSerializer,
    EventSerializer,
    LeaseSerializer,
    ReleaseClaimSerializer,
    ResolveSerializer,
    VerifySerializer,
    report_columns,
)
from .summary import report_summary
from .waiting import claim_waiting

# The problems a write to a claimed report can answer, as schema examples.
TOKEN_PROBLEMS = (InvalidInput, NotFound, ClaimTokenRequired, ClaimTokenMismatch, LeaseLost)

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


def _max_chars_param(raw) -> int:
    try:
        return parse_max_chars(raw)
    except ValueError as error:
        raise ValidationError({"max_chars": [str(error)]}) from None


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
class BugReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
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

    def _report_response(self, report_id, status_code=status.HTTP_200_OK, headers=None):
        self.kwargs[self.lookup_field] = str(report_id)
        report = self.get_object()
        response = Response(self.get_serializer(report).data, status=status_code, headers=headers)
        response["ETag"] = etag_for(report.version)
        return response

    def retrieve(self, request, *args, **kwargs):
        return self._report_response(self.report_id())

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
            claim_token=request.headers.get("X-Claim-Token"),
            is_admin=is_admin(request),
        )
        return self._report_response(report_id)

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
            claim_token=request.headers.get("X-Claim-Token"),
            is_admin=is_admin(request),
        )
        return Response(EventSerializer(event).data, status=status.HTTP_201_CREATED)

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

    def _claim_response(self, report, token, *, view: str = "full", context=None):
        # ClaimResponseSerializer's shape (it documents it), without building its nested
        # report serializer's fields on every claim.
        body = {
            "claim_token": token,
            "claim_expires_at": serializers.DateTimeField().to_representation(
                report.claim_expires_at
            ),
            "claim_epoch": report.claim_epoch,
            "report": REPORT_VIEWS[view](
                report_with_counts(report), context=self.get_serializer_context()
            ).data,
        }
        if context is not None:
            body["context"] = context
        response = Response(body)
        response["ETag"] = etag_for(report.version)
        return response

    @extend_schema(
        summary="Claim a report",
        description=(
            "Takes an expiring lease (default 900 s, max 86400): status `in_progress`, assignee "
            "the caller. The token is shown only here. Held by someone else: 409; resolved or "
            "closed: 409."
        ),
        request=LeaseSerializer,
        responses={
            200: ClaimResponseSerializer,
            **problems(
                400, 401, 403, 404, 409, examples=(InvalidInput, ClaimConflict, NotClaimable)
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def claim(self, request, *args, **kwargs):
        serializer = LeaseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # The response is read in the claim's transaction: a token is never lost to a failed read.
        with transaction.atomic():
            report, token = claims.report_claim(
                report_id=self.report_id(),
                actor=caller_id(request),
                lease_seconds=serializer.validated_data.get("lease_seconds"),
            )
            return self._claim_response(report, token)

    @extend_schema(
        summary="Claim the next report",
        description=(
            "Atomically claims the highest-priority open, unclaimed canonical report matching "
            "the filters (`severity`, `category`, `component`: any of a list or comma list). "
            "Concurrent callers never get the same report. 204 when none is available. "
            "`view: compact` returns the report in the compact view; `context: true` adds the "
            "report's context bundle (`max_chars`, default 12,000) as `context`: one call from "
            "'give me work' to 'I know enough to start'. `wait` (0-60 s) long-polls: with "
            "nothing to hand out, the request waits until a matching report can be claimed "
            "(then claims it, exactly as without `wait`) or the wait ends (204). A report "
            "committed on any instance reaches a waiting agent within a second. Too many "
            "waiting requests on one instance: 503 with Retry-After."
        ),
        request=ClaimNextSerializer,
        responses={
            200: ClaimResponseSerializer,
            204: OpenApiResponse(description="Nothing to claim (after `wait` seconds)."),
            **problems(400, 401, 403),
        },
    )
    @action(detail=False, methods=["post"], url_path="claim-next", filterset_class=None)
    def claim_next(self, request, *args, **kwargs):
        filters = {}
        if request.data != {}:  # an empty body (the usual call) has nothing to validate
            serializer = ClaimNextSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            filters = dict(serializer.validated_data)
        lease_seconds = filters.pop("lease_seconds", None)
        view = filters.pop("view", "full")
        with_context = filters.pop("context", False)
        max_chars = filters.pop("max_chars", DEFAULT_MAX_CHARS)
        wait = filters.pop("wait", 0)
        actor = caller_id(request)

        def attempt():
            if not with_context:
                # The claimed report comes back with everything the response shows: nothing
                # is read after the claim commits, so a token cannot be lost to a failed read.
                claimed = claims.report_claim_next(
                    actor=actor, lease_seconds=lease_seconds, filters=filters
                )
                return None if claimed is None else self._claim_response(*claimed, view=view)
            # The bundle is read in the claim's transaction: if reading it fails, the claim
            # is undone with it, so a token is never lost to a failed read here either.
            with transaction.atomic():
                claimed = claims.report_claim_next(
                    actor=actor, lease_seconds=lease_seconds, filters=filters
                )
                if claimed is None:
                    return None
                bundle = context_bundle(report_id=claimed[0].pk, max_chars=max_chars)
                return self._claim_response(*claimed, view=view, context=bundle.data)

        response = (
            attempt() if not wait else claim_waiting(filters=filters, wait=wait, attempt=attempt)
        )
        return response or Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Extend a lease",
        description="With the claim's token; 409 when the lease was lost.",
        request=LeaseSerializer,
        parameters=[CLAIM_TOKEN],
        responses={
            200: BugReportSerializer,
            **problems(400, 401, 403, 404, 409, examples=TOKEN_PROBLEMS),
        },
    )
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, *args, **kwargs):
        serializer = LeaseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = claims.report_heartbeat(
            report_id=self.report_id(),
            actor=caller_id(request),
            claim_token=request.headers.get("X-Claim-Token", ""),
            lease_seconds=serializer.validated_data.get("lease_seconds"),
        )
        return self._report_response(report.pk)

    @extend_schema(
        summary="Give a claimed report back",
        description="With the token (or as admin): status `triaged`, claim cleared, optional note.",
        request=ReleaseClaimSerializer,
        parameters=[CLAIM_TOKEN],
        responses={
            200: BugReportSerializer,
            **problems(400, 401, 403, 404, 409, examples=TOKEN_PROBLEMS),
        },
    )
    @action(detail=True, methods=["post"])
    def release(self, request, *args, **kwargs):
        serializer = ReleaseClaimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = claims.report_release(
            report_id=self.report_id(),
            actor=caller_id(request),
            claim_token=request.headers.get("X-Claim-Token"),
            reason=serializer.validated_data.get("reason") or "other",
            note=serializer.validated_data.get("note", ""),
            is_admin=is_admin(request),
        )
        return self._report_response(report.pk)

    @extend_schema(
        summary="Resolve a report",
        description=(
            "With the token (or as admin). `verify: true` moves it to `awaiting_verification`, "
            "otherwise `resolved`; the claim is cleared and open duplicates follow."
        ),
        request=ResolveSerializer,
        parameters=[CLAIM_TOKEN],
        responses={
            200: BugReportSerializer,
            **problems(400, 401, 403, 404, 409, examples=TOKEN_PROBLEMS),
        },
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, *args, **kwargs):
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = claims.report_resolve(
            report_id=self.report_id(),
            actor=caller_id(request),
            claim_token=request.headers.get("X-Claim-Token"),
            is_admin=is_admin(request),
            **serializer.validated_data,
        )
        return self._report_response(report.pk)

    @extend_schema(
        summary="Verify a fix",
        description=(
            "On an `awaiting_verification` report. `passed`: `resolved`, with `verified_by` and "
            "`verified_at`. `failed`: `triaged` and back in the claim-next pool, the fixing "
            "attempt marked `verification: failed`. The fixer's `resolution_notes` are kept; "
            "the note becomes `verification_notes` and a `verified` event. The key that "
            "resolved the report may not verify it (403 `own-fix`; admins may). A verifier "
            "holding a claim (claim-next with `purpose: verify`) sends its X-Claim-Token."
        ),
        request=VerifySerializer,
        parameters=[CLAIM_TOKEN],
        responses={
            200: BugReportSerializer,
            **problems(
                400,
                401,
                403,
                404,
                409,
                examples=(*TOKEN_PROBLEMS, OwnFixNotVerifiable, TransitionNotAllowed),
            ),
        },
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def verify(self, request, *args, **kwargs):
        serializer = VerifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = claims.report_verify(
            report_id=self.report_id(),
            actor=caller_id(request),
            outcome=serializer.validated_data["outcome"],
            note=serializer.validated_data.get("note", ""),
            claim_token=request.headers.get("X-Claim-Token"),
            is_admin=is_admin(request),
        )
        return self._report_response(report.pk)

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
        return self._report_response(report.pk)

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
        return self._report_response(report.pk)

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
