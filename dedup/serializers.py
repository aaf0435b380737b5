from rest_framework import serializers

from .models import DedupGroup


class CanonicalSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    status = serializers.CharField()
    severity = serializers.CharField()


class DedupGroupSerializer(serializers.ModelSerializer):
    canonical = CanonicalSerializer(help_text="The report every duplicate of the group points at.")
    inputs = serializers.JSONField(help_text="The normalised parts the fingerprint was made of.")
    releases_seen = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = DedupGroup
        fields = [
            "id",
            "fingerprint",
            "algorithm_version",
            "canonical",
            "occurrences",
            "first_seen",
            "last_seen",
            "inputs",
            "releases_seen",
            "active",
            "merged_into",
            "split_from",
            "created_at",
        ]
        read_only_fields = fields


class MergeSerializer(serializers.Serializer):
    into = serializers.UUIDField(
        help_text="The report to merge into; a duplicate stands for its canonical report."
    )


class SplitSerializer(serializers.Serializer):
    """No fields: the report in the path is split off."""
