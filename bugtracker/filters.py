"""Query-parameter filters shared by every app's lists."""

from datetime import UTC

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField


class BoundedIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, handed on in UTC: PostgreSQL refuses offsets past ±15:59 that Python takes
    (`-22:19`), and `0001-01-01T00:00+01:00` has no UTC year; either would be a 500, so the
    first is normalised and the second is a 400 naming the parameter."""

    def clean(self, value):
        value = super().clean(value)
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise forms.ValidationError("Date out of range.", code="invalid") from None
        return value


class IsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField
