from rest_framework import serializers

from .models import Release


class ReleaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Release
        fields = ["id", "sha", "version", "environment", "deployed_at", "created_at"]
        read_only_fields = fields


class ReleaseCreateSerializer(serializers.Serializer):
    sha = serializers.RegexField(
        r"^[0-9a-fA-F]{4,64}$",
        max_length=64,
        help_text="The deployed git commit (4 to 64 hex digits; stored lowercase).",
        error_messages={"invalid": "Must be 4 to 64 hexadecimal characters (a git commit)."},
    )
    version = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    environment = serializers.CharField(max_length=100)
    deployed_at = serializers.DateTimeField(
        required=False, help_text="When it went live; defaults to now."
    )

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            errors = {name: ["Unknown field."] for name in sorted(unknown)}
            raise serializers.ValidationError(errors)
        return attrs
