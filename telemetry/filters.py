from django import forms
from django_filters import rest_framework as filters

from bugtracker.filters import IsoDateTimeFilter

from .models import Release


class ShaPrefixField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if not value:
            return value
        value = value.strip().lower()
        if not (4 <= len(value) <= 64) or any(c not in "0123456789abcdef" for c in value):
            raise forms.ValidationError("sha must be 4 to 64 hexadecimal characters.")
        return value


class ShaPrefixFilter(filters.CharFilter):
    field_class = ShaPrefixField


class ReleaseFilter(filters.FilterSet):
    environment = filters.CharFilter(help_text="Exact environment name.")
    sha = ShaPrefixFilter(
        lookup_expr="startswith",
        help_text="A commit sha or a prefix of one (at least 4 hex digits).",
    )
    deployed_after = IsoDateTimeFilter(
        field_name="deployed_at", lookup_expr="gte", help_text="Deployed at or after (ISO 8601)."
    )
    deployed_before = IsoDateTimeFilter(
        field_name="deployed_at", lookup_expr="lt", help_text="Deployed before (ISO 8601)."
    )

    class Meta:
        model = Release
        fields = ["environment", "sha", "deployed_after", "deployed_before"]
