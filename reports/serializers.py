import copy
import json
from enum import Enum

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from bugtracker.serializers import UnknownFieldsRefused
from dedup.fingerprint import repo_hints

from .context import CONTEXT_SCHEMA, MAX_MAX_CHARS, MIN_MAX_CHARS, repo_path
from .models import (
    AttemptPurpose,
    BugReport,
    BugReportEvent,
    ClaimAttempt,
    EventKind,
    ReleaseReason,
    Severity,
    Source,
    Status,
    Verification,
)

TITLE_MAX = 300
DESCRIPTION_MAX = 64 * 1024
STACK_TRACE_MAX = 256 * 1024
METADATA_MAX = 16 * 1024
MESSAGE_MAX = 64 * 1024
SHORT_TEXT_MAX = 200


def json_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


class StrictCharField(serializers.CharField):
    """A string, and only a string: numbers and booleans are not silently converted."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: 0, 1, "yes" and "true" are not silently converted."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: strings, floats and booleans are refused."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data):
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A JSON object (not a list or scalar) of at most `max_bytes` when serialised."""

    def __init__(self, *, max_bytes: int, **kwargs):
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if json_size(value) > self.max_bytes:
            raise serializers.ValidationError(f"Must be at most {self.max_bytes} bytes as JSON.")
        return value


class StrictChoiceField(serializers.ChoiceField):
    default_error_messages = {"invalid_choice": "{input!r} is not one of: {choices}."}

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        if not isinstance(data, str) or data not in self.choices:
            self.fail("invalid_choice", input=data, choices=", ".join(self.choices))
        return data


def _text(max_length: int, **kwargs):
    return StrictCharField(max_length=max_length, allow_null=True, required=False, **kwargs)


def commit_sha_field():
    return serializers.RegexField(r"^[0-9a-fA-F]{4,64}$", max_length=64)


class BugReportWriteFields(UnknownFieldsRefused):
    """Fields a client may send, with the limits of the contract."""

    title = StrictCharField(min_length=1, max_length=TITLE_MAX, trim_whitespace=True)
    description = StrictCharField(
        max_length=DESCRIPTION_MAX, allow_blank=True, required=False, trim_whitespace=False
    )
    severity = StrictChoiceField(choices=Severity.choices, required=False)
    category = _text(100)
    component = _text(SHORT_TEXT_MAX)
    route = _text(500)
    environment = _text(100)
    metadata = JSONObjectField(max_bytes=METADATA_MAX, required=False)
    automation_enabled = StrictBooleanField(required=False)
    assignee_id = _text(SHORT_TEXT_MAX)


class BugReportCreateSerializer(BugReportWriteFields):
    source = StrictChoiceField(choices=Source.choices, required=False)
    reporter_id = _text(SHORT_TEXT_MAX)
    stack_trace = StrictCharField(
        max_length=STACK_TRACE_MAX, allow_blank=True, required=False, trim_whitespace=False
    )
    trace_id = _text(64)
    request_id = _text(200)
    release_sha = _text(64)
    telemetry = JSONObjectField(max_bytes=METADATA_MAX, required=False)
    fingerprint = serializers.ListField(
        child=StrictCharField(max_length=SHORT_TEXT_MAX),
        min_length=1,
        max_length=16,
        required=False,
        help_text="Override grouping: strings to hash; `{{ default }}` stands for the computed fingerprint.",
    )


class BugReportUpdateSerializer(BugReportWriteFields):
    title = StrictCharField(min_length=1, max_length=TITLE_MAX, required=False)
    status = StrictChoiceField(choices=Status.choices, required=False)
    resolution_notes = StrictCharField(
        max_length=DESCRIPTION_MAX, allow_blank=True, required=False, trim_whitespace=False
    )
    commit_shas = serializers.ListField(child=commit_sha_field(), max_length=100, required=False)
    needs_human = StrictBooleanField(
        required=False,
        help_text="Set it to take the report out of claim-next; clearing it needs the admin role.",
    )


_PLAIN_FIELDS = (
    serializers.CharField,
    serializers.ChoiceField,
    serializers.IntegerField,
    serializers.BooleanField,
    serializers.JSONField,
)


def _iso_datetime(value, zone):
    """DateTimeField's ISO 8601 output: in the field's zone, `Z` for +00:00."""
    if not value:
        return None
    if zone is not None and timezone.is_aware(value):
        value = value.astimezone(zone)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _fast_reader(field):
    """(name, reader(serializer, obj) or None): a reader that gives what DRF gives for this
    field, or None where the field itself must render."""
    if len(field.source_attrs) != 1 or isinstance(field, serializers.SerializerMethodField):
        if isinstance(field, serializers.SerializerMethodField):
            method = field.method_name
            return field.field_name, lambda self, obj: getattr(self, method)(obj)
        return field.field_name, None
    attr = field.source_attrs[0]
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        attname = f"{attr}_id"
        return field.field_name, lambda _, obj: _str_or_none(getattr(obj, attname))
    if isinstance(field, serializers.UUIDField) and field.uuid_format == "hex_verbose":
        return field.field_name, lambda _, obj: _str_or_none(getattr(obj, attr))
    if isinstance(field, serializers.DateTimeField):
        output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
        if not isinstance(output_format, str) or output_format.lower() != ISO_8601:
            return field.field_name, None
        zone = getattr(field, "timezone", None) or field.default_timezone()
        return field.field_name, lambda _, obj: _iso_datetime(getattr(obj, attr), zone)
    if isinstance(field, _PLAIN_FIELDS) and not getattr(field, "binary", False):
        if isinstance(field, serializers.ChoiceField):
            return field.field_name, lambda _, obj: _choice(getattr(obj, attr))
        return field.field_name, lambda _, obj: getattr(obj, attr)
    return field.field_name, None


def _str_or_none(value):
    return None if value is None else str(value)


def _choice(value):
    # A TextChoices member (an unsaved report's default) renders as its plain value.
    return value.value if isinstance(value, Enum) else value


class ClaimSerializer(serializers.Serializer):
    holder = serializers.CharField()
    expires_at = serializers.DateTimeField()
    epoch = serializers.IntegerField(
        help_text="The claim's epoch (+1 with every claim and re-claim), to fence stale holders."
    )


@extend_schema_serializer(extensions={"x-always-fields": ["id"]})
class BugReportSerializer(serializers.ModelSerializer):
    """A report as the API shows it: never the claim token or its hash.

    `fields` (query or body) may ask for fewer fields: only `id` always comes back. The
    serializer's context may carry `fields`, the names to render.
    """

    claim = serializers.SerializerMethodField()
    sla_breached = serializers.SerializerMethodField()
    occurrences = serializers.SerializerMethodField()
    duplicates_count = serializers.SerializerMethodField()
    repo_hints = serializers.SerializerMethodField()

    class Meta:
        model = BugReport
        fields = [
            "id",
            "title",
            "description",
            "severity",
            "category",
            "status",
            "source",
            "reporter_id",
            "assignee_id",
            "component",
            "route",
            "environment",
            "stack_trace",
            "trace_id",
            "request_id",
            "release_sha",
            "telemetry",
            "duplicate_of",
            "dedup_group",
            "fingerprint",
            "automation_enabled",
            "attempts",
            "next_attempt_at",
            "needs_human",
            "resolution_notes",
            "commit_shas",
            "resolved_in_release",
            "pr_url",
            "tests",
            "resolved_by",
            "verified_by",
            "verified_at",
            "verification_notes",
            "claim",
            "claim_epoch",
            "version",
            "legacy_id",
            "metadata",
            "created_at",
            "updated_at",
            "resolved_at",
            "sla_due_at",
            "sla_breached",
            "occurrences",
            "duplicates_count",
            "repo_hints",
        ]
        read_only_fields = fields

    def get_fields(self):
        # Building ~40 fields from the model costs 2 ms per serializer (a fifth of a
        # submission); a copy of fields built once costs 0.5 ms.
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return copy.deepcopy(built)

    def _plan_for(self, plan):
        fields = self.context.get("fields")
        if fields is None:
            return plan
        chosen = getattr(self, "_chosen_plan", None)
        if chosen is None:
            wanted = set(fields)
            chosen = self._chosen_plan = [(name, fast) for name, fast in plan if name in wanted]
        return chosen

    def to_representation(self, instance):
        """DRF's output, read straight off the row for the plain fields (a list page renders
        50 reports x 40 fields: the generic path was half of its time).

        The readers are worked out once per class, so a single report (a claim, a
        submission) renders without building its 40 fields at all.
        """
        cls = type(self)
        plan = cls.__dict__.get("_plan")
        if plan is None:
            plan = cls._plan = [_fast_reader(field) for field in self._readable_fields]
        out = {}
        for name, fast in self._plan_for(plan):
            if fast is not None:
                out[name] = fast(self, instance)
                continue
            field = self.fields[name]
            attribute = field.get_attribute(instance)
            out[name] = None if attribute is None else field.to_representation(attribute)
        return out

    @extend_schema_field(ClaimSerializer(allow_null=True))
    def get_claim(self, report):
        if not report.claim_is_live(self.context.get("now")):
            return None
        return {
            "holder": report.claim_holder,
            "expires_at": report.claim_expires_at,
            "epoch": report.claim_epoch,
        }

    def get_sla_breached(self, report) -> bool:
        now = self.context.get("now") or timezone.now()
        return bool(report.is_open and report.sla_due_at and now > report.sla_due_at)

    def get_occurrences(self, report) -> int:
        occurrences = getattr(report, "group_occurrences", None)
        if occurrences is None and report.dedup_group_id:
            occurrences = report.dedup_group.occurrences
        return occurrences or 1

    def get_duplicates_count(self, report) -> int:
        count = getattr(report, "duplicates_total", None)
        if count is None:
            count = report.duplicates.count()
        return count

    def get_repo_hints(self, report) -> list[str]:
        if not report.stack_trace:
            return []
        return repo_hints(report.stack_trace)


# The columns each shown field reads: a response with fewer fields loads fewer columns (a
# compact page must not drag 50 descriptions and telemetry blobs out of the database).
# `occurrences` and `duplicates_count` come from report_list()'s annotations.
_FIELD_COLUMNS = {
    "claim": ("claim_holder", "claim_expires_at", "claim_epoch"),
    "sla_breached": ("status", "sla_due_at"),
    "occurrences": ("dedup_group",),
    "duplicates_count": (),
    "repo_hints": ("stack_trace",),
}


class BugReportCompactSerializer(BugReportSerializer):
    """`view=compact`: what an agent needs to pick a report, about 350 characters each.

    Times to the second, and the first three repo hints relative to the repository root.
    """

    sla_due_at = serializers.DateTimeField(format="%Y-%m-%dT%H:%M:%SZ")
    created_at = serializers.DateTimeField(format="%Y-%m-%dT%H:%M:%SZ")

    class Meta(BugReportSerializer.Meta):
        fields = [
            "id",
            "title",
            "severity",
            "status",
            "component",
            "category",
            "occurrences",
            "claim",
            "sla_due_at",
            "sla_breached",
            "created_at",
            "repo_hints",
        ]
        read_only_fields = fields

    def get_repo_hints(self, report) -> list[str]:
        return [repo_path(path) for path in repo_hints(report.stack_trace)[:COMPACT_REPO_HINTS]]


# The compact view's repo_hints: the innermost few files are where an agent starts.
COMPACT_REPO_HINTS = 3
REPORT_VIEWS = {"full": BugReportSerializer, "compact": BugReportCompactSerializer}
REPORT_VIEW_FIELDS = {name: tuple(cls.Meta.fields) for name, cls in REPORT_VIEWS.items()}
COMPACT_FIELDS = REPORT_VIEW_FIELDS["compact"]


def report_columns(fields) -> list[str]:
    """Model columns to load for rendering `fields` (for QuerySet.only())."""
    columns = {"id"}
    for name in fields:
        columns.update(_FIELD_COLUMNS.get(name, (name,)))
    return sorted(columns)


@extend_schema_field(CONTEXT_SCHEMA)
class ContextBundleField(serializers.JSONField):
    """The context bundle (GET /api/bug-reports/{id}/context) as a JSON object."""


class ClaimResponseSerializer(serializers.Serializer):
    claim_token = serializers.CharField(
        help_text="Shown only in this response; send it as X-Claim-Token."
    )
    claim_expires_at = serializers.DateTimeField()
    claim_epoch = serializers.IntegerField(
        help_text="+1 with every claim and re-claim: fence writes (a push, a deploy) with it."
    )
    report = BugReportSerializer()
    context = ContextBundleField(
        required=False, help_text="With `context: true` (claim-next): the report's context bundle."
    )


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = BugReportEvent
        fields = ["id", "kind", "actor", "message", "data", "created_at"]
        read_only_fields = fields


class EventCreateSerializer(UnknownFieldsRefused):
    kind = StrictChoiceField(
        choices=[EventKind.NOTE, EventKind.AGENT_LOG, EventKind.AGENT_ACTION], required=False
    )
    message = StrictCharField(max_length=MESSAGE_MAX, allow_blank=True, trim_whitespace=False)
    data = JSONObjectField(max_bytes=METADATA_MAX, required=False)


class LeaseSerializer(UnknownFieldsRefused):
    lease_seconds = StrictIntegerField(min_value=1, max_value=86400, required=False)


class CommaListField(serializers.ListField):
    """A JSON list of strings, or one string holding a comma list ("high,critical")."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [part.strip() for part in data.split(",") if part.strip()]
        return super().to_internal_value(data)


class ClaimNextSerializer(LeaseSerializer):
    severity = CommaListField(
        child=StrictChoiceField(choices=Severity.choices),
        required=False,
        help_text="Any of these severities: a list or a comma list.",
    )
    min_severity = StrictChoiceField(choices=Severity.choices, required=False)
    purpose = StrictChoiceField(
        choices=AttemptPurpose.choices,
        required=False,
        help_text="`fix` (default): open reports to work on. `verify`: reports awaiting "
        "verification that the caller did not resolve.",
    )
    category = CommaListField(
        child=StrictCharField(max_length=100),
        required=False,
        max_length=50,
        help_text="Any of these categories: a list or a comma list.",
    )
    component = CommaListField(
        child=StrictCharField(max_length=SHORT_TEXT_MAX),
        required=False,
        max_length=50,
        help_text="Any of these components: a list or a comma list.",
    )
    view = StrictChoiceField(
        choices=list(REPORT_VIEWS),
        required=False,
        help_text="Shape of the returned `report`: `full` (default) or `compact`.",
    )
    context = StrictBooleanField(
        required=False,
        help_text="Also return the report's context bundle as `context` (one call to start).",
    )
    max_chars = StrictIntegerField(
        min_value=MIN_MAX_CHARS,
        max_value=MAX_MAX_CHARS,
        required=False,
        help_text="The context bundle's budget in characters (default 12,000); needs `context`.",
    )

    wait = StrictIntegerField(
        min_value=0,
        max_value=60,
        required=False,
        help_text="Seconds to wait for a matching report when none is available (long-poll).",
    )

    def validate(self, attrs):
        if "max_chars" in attrs and not attrs.get("context"):
            raise serializers.ValidationError({"max_chars": ["Only with `context: true`."]})
        return attrs


class ReleaseClaimSerializer(UnknownFieldsRefused):
    reason = StrictChoiceField(
        choices=ReleaseReason.choices,
        required=False,
        default=ReleaseReason.OTHER,
        help_text="Why it is given back. `needs_info` and `not_a_bug` take it out of claim-next "
        "until a human clears `needs_human`; `env_error` sets a growing cooldown.",
    )
    note = StrictCharField(max_length=MESSAGE_MAX, allow_blank=True, required=False)


TESTS_MAX = 50


class HttpUrlField(serializers.URLField):
    default_error_messages = {"invalid": "Must be an http or https URL."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data.lower().startswith(("http://", "https://")):
            self.fail("invalid")
        return super().to_internal_value(data)


class ResolveSerializer(UnknownFieldsRefused):
    resolution_notes = StrictCharField(
        max_length=DESCRIPTION_MAX, allow_blank=True, required=False, trim_whitespace=False
    )
    commit_shas = serializers.ListField(child=commit_sha_field(), max_length=100, required=False)
    verify = StrictBooleanField(required=False, default=False)
    resolved_in_release = StrictCharField(max_length=64, required=False)
    pr_url = HttpUrlField(
        max_length=2000, required=False, help_text="The pull request with the fix (http/https)."
    )
    tests = serializers.ListField(
        child=StrictCharField(max_length=500, min_length=1),
        max_length=TESTS_MAX,
        required=False,
        help_text="Up to 50 test ids that reproduce the bug and pass with the fix.",
    )


class VerifySerializer(UnknownFieldsRefused):
    outcome = StrictChoiceField(choices=Verification.choices)
    note = StrictCharField(max_length=DESCRIPTION_MAX, allow_blank=True, required=False)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = ClaimAttempt
        fields = [
            "id",
            "holder",
            "claim_epoch",
            "purpose",
            "started_at",
            "ended_at",
            "outcome",
            "reason",
            "note",
            "exit_code",
            "output_tail",
            "verification",
        ]
        read_only_fields = fields
