from django_filters import rest_framework as filters

from reports.filters import StrictBooleanFilter

from .models import DedupGroup


class DedupGroupFilter(filters.FilterSet):
    active = StrictBooleanFilter(
        field_name="active", help_text="Still catching new occurrences of its fingerprint."
    )
    fingerprint = filters.CharFilter(field_name="fingerprint")
    canonical = filters.UUIDFilter(field_name="canonical_id")
    include_merged = StrictBooleanFilter(
        method="filter_noop", help_text="Also list groups merged into another (default false)."
    )

    class Meta:
        model = DedupGroup
        fields = []

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_merged"):
            queryset = queryset.filter(merged_into__isnull=True)
        return queryset

    def filter_noop(self, queryset, name, value):
        return queryset
