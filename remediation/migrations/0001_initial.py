# AgentRun, taken over from reports with its table (`agent_runs`) and index as they are:
# state only, no table is rebuilt.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("reports", "0004_agentrun_moves_to_remediation"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AgentRun",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("attempt", models.PositiveIntegerField()),
                        ("runner", models.CharField(max_length=200)),
                        ("command", models.JSONField(default=list)),
                        ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("exit_code", models.IntegerField(blank=True, null=True)),
                        (
                            "outcome",
                            models.CharField(
                                blank=True,
                                choices=[
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                    ("timed_out", "Timed Out"),
                                    ("crashed", "Crashed"),
                                ],
                                max_length=16,
                                null=True,
                            ),
                        ),
                        ("output_tail", models.TextField(blank=True, default="")),
                        ("error", models.TextField(blank=True, default="")),
                        (
                            "report",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="runs",
                                to="reports.bugreport",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "agent_runs",
                        "ordering": ["started_at", "id"],
                        "indexes": [
                            models.Index(
                                fields=["report", "started_at"], name="agent_runs_report_idx"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
