from rest_framework import serializers

from .models import AgentRun


class AgentRunSerializer(serializers.ModelSerializer):
    """One remediation run: who ran what, how it ended, and the tail of its output."""

    duration_seconds = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Null while the run is going."
    )

    class Meta:
        model = AgentRun
        fields = [
            "id",
            "attempt",
            "runner",
            "command",
            "started_at",
            "finished_at",
            "duration_seconds",
            "exit_code",
            "outcome",
            "error",
            "output_tail",
        ]
        read_only_fields = fields
