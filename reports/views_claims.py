"""The claim actions of the reports API: claim, claim-next, heartbeat, release, resolve and
verify (the services are in claims.py). A mixin the reports viewset composes: it gives
`report_id()`, `report_response()` and the serializer context."""

from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from bugtracker.domain import InvalidInput, NotFound
from bugtracker.http import claim_token, etag_for
from bugtracker.permissions import caller_id, is_admin
from bugtracker.schema import CLAIM_TOKEN, problems

from . import claims
from .context import DEFAULT_MAX_CHARS, context_bundle
from .errors import (
    ClaimConflict,
    ClaimTokenMismatch,
    ClaimTokenRequired,
    LeaseLost,
    NotClaimable,
    OwnFixNotVerifiable,
    TransitionNotAllowed,
)
from .selectors import report_with_counts
from .serializers import (
    REPORT_VIEWS,
    BugReportSerializer,
    ClaimNextSerializer,
    ClaimResponseSerializer,
    LeaseSerializer,
    ReleaseClaimSerializer,
    ResolveSerializer,
    VerifySerializer,
)
from .waiting import claim_waiting

# The problems a write to a claimed report can answer, as schema examples.
TOKEN_PROBLEMS = (InvalidInput, NotFound, ClaimTokenRequired, ClaimTokenMismatch, LeaseLost)
# What heartbeat, release and resolve answer.
CLAIMED_WRITE_RESPONSES = {
    200: BugReportSerializer,
    **problems(400, 401, 403, 404, 409, examples=TOKEN_PROBLEMS),
}


def _valid(serializer_class, request) -> dict:
    """The request's body, validated (a 400 naming each bad field otherwise)."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# No docstring: the schema would take it for the viewset's description (see the module's).
class ClaimActions:
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

    def _claimed_write(self, service, **arguments):
        """A write under a claim: `service` gets the report, the caller and its X-Claim-Token;
        the answer is the report as it now stands."""
        report = service(
            report_id=self.report_id(),
            actor=caller_id(self.request),
            claim_token=claim_token(self.request),
            **arguments,
        )
        return self.report_response(report.pk)

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
        lease_seconds = _valid(LeaseSerializer, request).get("lease_seconds")
        # The response is read in the claim's transaction: a token is never lost to a failed read.
        with transaction.atomic():
            report, token = claims.report_claim(
                report_id=self.report_id(), actor=caller_id(request), lease_seconds=lease_seconds
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
        # An empty body (the usual call) has nothing to validate.
        filters = dict(_valid(ClaimNextSerializer, request)) if request.data != {} else {}
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
        responses=CLAIMED_WRITE_RESPONSES,
    )
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, *args, **kwargs):
        body = _valid(LeaseSerializer, request)
        return self._claimed_write(claims.report_heartbeat, lease_seconds=body.get("lease_seconds"))

    @extend_schema(
        summary="Give a claimed report back",
        description="With the token (or as admin): status `triaged`, claim cleared, optional note.",
        request=ReleaseClaimSerializer,
        parameters=[CLAIM_TOKEN],
        responses=CLAIMED_WRITE_RESPONSES,
    )
    @action(detail=True, methods=["post"])
    def release(self, request, *args, **kwargs):
        body = _valid(ReleaseClaimSerializer, request)
        return self._claimed_write(
            claims.report_release,
            reason=body.get("reason") or "other",
            note=body.get("note", ""),
            is_admin=is_admin(request),
        )

    @extend_schema(
        summary="Resolve a report",
        description=(
            "With the token (or as admin). `verify: true` moves it to `awaiting_verification`, "
            "otherwise `resolved`; the claim is cleared and open duplicates follow."
        ),
        request=ResolveSerializer,
        parameters=[CLAIM_TOKEN],
        responses=CLAIMED_WRITE_RESPONSES,
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, *args, **kwargs):
        body = _valid(ResolveSerializer, request)
        return self._claimed_write(claims.report_resolve, is_admin=is_admin(request), **body)

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
        body = _valid(VerifySerializer, request)
        return self._claimed_write(
            claims.report_verify,
            outcome=body["outcome"],
            note=body.get("note", ""),
            is_admin=is_admin(request),
        )
