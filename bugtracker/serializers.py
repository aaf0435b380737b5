"""Serializer behaviour shared by every app's request bodies."""

from collections.abc import Mapping

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers


class UnknownFieldsRefused(serializers.Serializer):
    """A request body whose unknown fields are refused (400 naming them), never ignored,
    so a typo in an agent does not silently drop data."""

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        errors = {str(name): ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if errors and isinstance(exc.detail, dict):
                exc.detail.update(errors)
            raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


class UnknownFieldsRefusedExtension(OpenApiSerializerExtension):
    """The schema says so too: `additionalProperties: false` on such request bodies."""

    target_class = UnknownFieldsRefused
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema
