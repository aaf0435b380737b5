from django import forms
from django.db.models import Q
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from bugtracker.filters import IsoDateTimeFilter

from .models import DONE_STATUSES, OPEN_STATUSES, SEVERITY_RANK, Severity, Source, Status

STATUS_GROUPS = {"open": OPEN_STATUSES, "done": DONE_STATUSES}
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}


class EveryValueWidget(forms.TextInput):
    """A repeated parameter means any of its values: `?a=x&a=y` reads as `?a=x,y`."""

    def value_from_datadict(self, data, files, name):
        if hasattr(data, "getlist"):
            values = [v for v in data.getlist(name) if v != ""]
            return ",".join(values) if values else None
        return data.get(name)


class CommaChoiceField(forms.Field):
    """A comma-separated list of known values; an unknown one is an error naming it."""

    widget = EveryValueWidget

    def __init__(self, *, allowed, aliases=None, **kwargs):
        self.allowed = list(allowed)
        self.aliases = aliases or {}
        super().__init__(**kwargs)

    def clean(self, value):
        if value in (None, ""):
            return None
        values: list[str] = []
        for part in (p.strip() for p in str(value).split(",")):
            if part in self.aliases:
                values.extend(self.aliases[part])
            elif part in self.allowed:
                values.append(part)
            else:
                choices = ", ".join([*self.allowed, *self.aliases])
                # Values go in params: django-filter %-formats the message, and input may hold "%".
                raise forms.ValidationError(
                    "%(value)r is not one of: %(choices)s.",
                    params={"value": part, "choices": choices},
                )
        return values


class StrictBooleanField(forms.Field):
    def clean(self, value):
        if value in (None, ""):
            return None
        word = str(value).lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise forms.ValidationError(
            "%(value)r is not a boolean; use true or false.", params={"value": value}
        )


class CommaChoiceFilter(filters.Filter):
    """Documented as a list (`?x=a,b` or `?x=a&x=b`) of its values and aliases."""

    field_class = CommaChoiceField

    def filter(self, qs, value):
        return qs if not value else qs.filter(**{f"{self.field_name}__in": value})


@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanFilter(filters.Filter):
    field_class = StrictBooleanField


def comma_list_schema(values) -> dict:
    return {"type": "array", "items": {"type": "string", "enum": list(values)}}


class StatusFilter(CommaChoiceFilter):
    pass


class SeverityFilter(CommaChoiceFilter):
    pass


extend_schema_field(comma_list_schema([*Status.values, *STATUS_GROUPS]))(StatusFilter)
extend_schema_field(comma_list_schema(Severity.values))(SeverityFilter)


class BugReportFilter(filters.FilterSet):
    status = StatusFilter(
        allowed=Status.values,
        aliases=STATUS_GROUPS,
        help_text="Statuses, as a comma list or the parameter repeated (any of them); `open` "
        "stands for new, triaged, in_progress, awaiting_verification and `done` for resolved, "
        "closed.",
    )
    severity = SeverityFilter(
        allowed=Severity.values,
        help_text="Severities, as a comma list or the parameter repeated (any of them).",
    )
    min_severity = filters.ChoiceFilter(
        choices=Severity.choices, method="filter_min_severity", help_text="This severity or worse."
    )
    category = filters.CharFilter()
    component = filters.CharFilter()
    source = filters.ChoiceFilter(choices=Source.choices)
    environment = filters.CharFilter()
    assigned_to = filters.CharFilter(
        method="filter_assigned_to", help_text="An assignee id, `none` (unassigned) or `me`."
    )
    claimed = StrictBooleanFilter(method="filter_claimed", help_text="Holds a live claim.")
    trace_id = filters.CharFilter()
    request_id = filters.CharFilter()
    release_sha = filters.CharFilter()
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    sla_breached = StrictBooleanFilter(method="filter_sla_breached")
    automation_enabled = StrictBooleanFilter(field_name="automation_enabled")
    needs_human = StrictBooleanFilter(
        field_name="needs_human",
        help_text="Waiting for a human (released as needs_info/not_a_bug, or out of attempts).",
    )
    include_duplicates = StrictBooleanFilter(
        method="filter_noop", help_text="Also list duplicates (default: canonical reports only)."
    )
    duplicate_of = filters.UUIDFilter(field_name="duplicate_of")
    q = filters.CharFilter(method="filter_text", help_text="Text in title or description.")

    class Meta:
        fields = []

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        if not data.get("include_duplicates") and not data.get("duplicate_of"):
            queryset = queryset.filter(duplicate_of__isnull=True)
        return queryset

    def filter_noop(self, queryset, name, value):
        return queryset

    def filter_min_severity(self, queryset, name, value):
        return queryset.filter(severity_rank__lte=SEVERITY_RANK[Severity(value)])

    def filter_assigned_to(self, queryset, name, value):
        if value == "none":
            return queryset.filter(Q(assignee_id__isnull=True) | Q(assignee_id=""))
        if value == "me":
            user = getattr(self.request, "user", None)
            value = getattr(user, "name", None) or "anonymous"
        return queryset.filter(assignee_id=value)

    def filter_claimed(self, queryset, name, value):
        live = Q(claim_holder__isnull=False, claim_expires_at__gt=timezone.now())
        return queryset.filter(live) if value else queryset.exclude(live)

    def filter_sla_breached(self, queryset, name, value):
        breached = Q(status__in=OPEN_STATUSES, sla_due_at__lt=timezone.now())
        return queryset.filter(breached) if value else queryset.exclude(breached)

    def filter_text(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(title__icontains=value) | Q(description__icontains=value))
