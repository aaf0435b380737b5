"""OpenAPI pieces shared by every app: the problem-details shape and its responses."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
RETRY_AFTER_STATUSES = ("429", "503")
# A 409 carries Retry-After only where it means "idempotent request in progress".
IN_PROGRESS_STATUS = "409"

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
        "required_role": serializers.CharField(
            required=False, help_text="For 403: the lowest role that may make the call."
        ),
        "allowed_roles": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="For 403: every role that may make the call.",
        ),
    },
)

DESCRIPTIONS = {
    400: "Invalid input (the field is named in `errors`).",
    401: "No API key, or an invalid or revoked one.",
    403: "The key's role may not make this call; `required_role` names the one it needs.",
    404: "Nothing with that id (unknown or malformed).",
    409: "Conflict with the report's state (lifecycle, claim or lease).",
    412: "If-Match names a stale version.",
    413: "Body over 1 MiB.",
    414: "URL (path and query string) over 4,096 characters.",
    415: "Body is not JSON.",
    422: "Idempotency-Key reused with another body.",
    428: "The report holds a live claim and the request has no X-Claim-Token.",
    429: "Throttled; see Retry-After.",
    503: (
        "The database is unavailable or busy, or the request ran past its deadline on the "
        "database (DB_REQUEST_DEADLINE): problem type `urn:bugtracker:problem:database-"
        "unavailable`; retry after Retry-After (a submission with the same Idempotency-Key)."
    ),
}
IN_PROGRESS_DESCRIPTION = (
    "A request with the same Idempotency-Key is still in progress and the wait for it ran "
    "out: problem type `urn:bugtracker:problem:idempotent-request-in-progress`; retry with "
    "the same key and body after Retry-After."
)
IDEMPOTENCY_HEADER = "Idempotency-Key"


class RoleAwareAutoSchema(AutoSchema):
    """Every operation names the roles that may call it: `x-roles` and its description's last line."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        roles = self.roles() if operation is not None else None
        if roles:
            operation["x-roles"] = roles
            line = f"Roles: {', '.join(roles)}."
            operation["description"] = f"{operation.get('description', '')}\n\n{line}".lstrip()
        return operation

    def roles(self) -> list[str] | None:
        # Imported here: DRF loads this schema class from settings, before the app registry
        # is ready, and permissions imports models.
        from .permissions import ROLE_LEVEL, RoleAtLeast

        try:
            permissions = self.view.get_permissions()
        except Exception:  # a view whose permissions need a real request: say nothing
            return None
        if any(isinstance(permission, AllowAny) for permission in permissions):
            return ["anonymous", *(str(role) for role in ROLE_LEVEL)]
        levels = [ROLE_LEVEL[p.minimum] for p in permissions if isinstance(p, RoleAtLeast)]
        if not levels:
            return None
        return [str(role) for role, level in ROLE_LEVEL.items() if level >= max(levels)]


def problems(*codes: int, examples: tuple = ()) -> dict:
    """Problem responses for `codes`, plus the ones any call can return. `examples`: domain
    error classes (bugtracker.domain.DomainError) whose problems the call can answer; each
    becomes a response example under its status, with its type, title and `example`."""
    every_call = (414, 429, 503)
    codes = set(codes) | {error.status_code for error in examples}
    return {
        code: OpenApiResponse(
            PROBLEM,
            description=DESCRIPTIONS.get(code, "Problem."),
            examples=[problem_example(error) for error in examples if error.status_code == code],
        )
        for code in sorted(codes | set(every_call))
    }


def problem_example(error) -> OpenApiExample:
    # Imported here: errors imports the signals the schema module has no business loading.
    from .errors import problem

    body = problem(
        error.status_code,
        error.example,
        slug=error.type_slug,
        title=error.title,
        **getattr(error, "example_extra", {}),
    )
    return OpenApiExample(
        error.type_slug,
        value=body,
        summary=error.title,
        status_codes=[str(error.status_code)],
        response_only=True,
    )


# Every `{id}` in this API's paths is a UUID (reports, dedup groups). The views accept any
# segment there so that a malformed id is a 404 problem, not the router's bare 404.
PATH_PARAMETER_SCHEMAS = {"id": {"type": "string", "format": "uuid"}}

REPORT_FROM_BODY = {"id": "$response.body#/id"}
REPORT_FROM_CLAIM = {
    "id": "$response.body#/report/id",
    "header.X-Claim-Token": "$response.body#/claim_token",
}
REPORT_OPERATIONS = (
    "bug_reports_retrieve",
    "bug_reports_partial_update",
    "bug_reports_events_list",
    "bug_reports_events_create",
    "bug_reports_runs_list",
    "bug_reports_claim_create",
    "bug_reports_heartbeat_create",
    "bug_reports_release_create",
    "bug_reports_resolve_create",
    "bug_reports_merge_create",
    "bug_reports_split_create",
)
CLAIM_OPERATIONS = (
    "bug_reports_heartbeat_create",
    "bug_reports_release_create",
    "bug_reports_resolve_create",
    "bug_reports_partial_update",
)
# OpenAPI links (source operation, status) -> target operation, parameters: how a client (and
# schemathesis's stateful phase) goes from a response to the next call.
LINKS = [
    *[(("bug_reports_create", "201"), target, REPORT_FROM_BODY) for target in REPORT_OPERATIONS],
    *[(("bug_reports_claim_create", "200"), t, REPORT_FROM_CLAIM) for t in CLAIM_OPERATIONS],
    *[(("bug_reports_claim_next_create", "200"), t, REPORT_FROM_CLAIM) for t in CLAIM_OPERATIONS],
    (
        ("bug_reports_retrieve", "200"),
        "dedup_groups_retrieve",
        {"id": "$response.body#/dedup_group"},
    ),
    (
        ("telemetry_releases_create", "201"),
        "telemetry_releases_list",
        {"sha": "$response.body#/sha", "environment": "$response.body#/environment"},
    ),
]


def _operations(result):
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def _complete_problem_responses(path: str, operation: dict) -> None:
    """What any such operation can answer, whether or not its view listed it: a JSON body can
    be invalid (400), too large (413) or not JSON (415); a key can be missing (401) or of the
    wrong role (403); an `{id}` can name nothing (404); a URL can be too long (414); a request
    with an Idempotency-Key can find the first one with that key still running (409)."""
    codes = {414}
    if "requestBody" in operation:
        codes |= {400, 413, 415}
    if {} not in operation.get("security", [{}]):
        codes |= {401, 403}
    if "{id}" in path:
        codes.add(404)
    responses = operation["responses"]
    if _takes_idempotency_key(operation):
        in_progress = responses.setdefault(
            IN_PROGRESS_STATUS,
            {
                "description": IN_PROGRESS_DESCRIPTION,
                "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
            },
        )
        if in_progress["description"] != IN_PROGRESS_DESCRIPTION:  # a 409 of its own too
            in_progress["description"] += f" Or: {IN_PROGRESS_DESCRIPTION}"
        _retry_after(in_progress)
    for code in sorted(codes):
        responses.setdefault(
            str(code),
            {
                "description": DESCRIPTIONS[code],
                "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
            },
        )


def _takes_idempotency_key(operation: dict) -> bool:
    return any(
        p.get("in") == "header" and p.get("name") == IDEMPOTENCY_HEADER
        for p in operation.get("parameters", [])
    )


def _retry_after(response: dict) -> None:
    response.setdefault("headers", {})["Retry-After"] = {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }


def problem_details_hook(result, generator, request, public):
    """drf-spectacular postprocessing, written once for every app: problems are served as
    application/problem+json, 429/503 (and an idempotent call's 409) carry Retry-After, `{id}` is a UUID, and the links
    between operations are declared."""
    by_id = {}
    for path, _method, operation in _operations(result):
        by_id[operation.get("operationId")] = operation
        _complete_problem_responses(path, operation)
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "path" and parameter["name"] in PATH_PARAMETER_SCHEMAS:
                parameter["schema"] = dict(PATH_PARAMETER_SCHEMAS[parameter["name"]])
        for code, response in operation["responses"].items():
            content = response.get("content", {})
            for media_type in list(content):
                if content[media_type].get("schema", {}).get("$ref", "").endswith("/Problem"):
                    content[PROBLEM_CONTENT_TYPE] = content.pop(media_type)
            if code in RETRY_AFTER_STATUSES and PROBLEM_CONTENT_TYPE in content:
                _retry_after(response)
    for (source, code), target, parameters in LINKS:
        response = by_id.get(source, {}).get("responses", {}).get(code)
        if response is None or target not in by_id:
            continue  # the operation is not in this schema (e.g. a filtered public view)
        response.setdefault("links", {})[target] = {"operationId": target, "parameters": parameters}
    _sparse_components(result)
    return result


def _sparse_components(result) -> None:
    """A component marked `x-always-fields` (a resource with `fields=`/`view=`) requires only
    those fields: any other may be left out of a response that asked for fewer."""
    for schema in result.get("components", {}).get("schemas", {}).values():
        always = schema.pop("x-always-fields", None)
        if always is not None:
            schema["required"] = [name for name in schema.get("required", []) if name in always]


IF_MATCH = OpenApiParameter(
    "If-Match",
    location=OpenApiParameter.HEADER,
    required=False,
    pattern=r'^(\*|(W/)?"?[0-9]{1,18}"?)$',
    description='The report version from its ETag (e.g. "3"); a stale one is refused with 412.',
)
CLAIM_TOKEN = OpenApiParameter(
    "X-Claim-Token",
    location=OpenApiParameter.HEADER,
    required=False,
    description="The token from the claim, needed while someone holds a live claim (admins may omit).",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Retry-safe submission: the same key and body within 24 h returns the first response "
        "(header Idempotent-Replayed: true); another body is a 422. The key, the report and "
        "the stored response commit together, so a request cut off at any point can be sent "
        "again with the same key and body. A concurrent request with the key waits for the "
        "first; a 409 idempotent-request-in-progress (only when that wait runs out) carries "
        "Retry-After."
    ),
)
