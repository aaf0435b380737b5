# Indexes the default agent queries need at 1,000,000 reports (benchmarks/list.py, EXPLAIN).

from django.db import migrations, models

# `q` is `icontains` on title and description: on PostgreSQL that is
# UPPER(col::text) LIKE UPPER('%…%'), which trigram GIN indexes over the same expressions
# answer. SQLite keeps scanning; it is the one-machine default.
TRIGRAM_INDEXES = {
    "bug_reports_title_trgm_idx": "(UPPER((title)::text)) gin_trgm_ops",
    "bug_reports_description_trgm_idx": "(UPPER(description)) gin_trgm_ops",
}


def create_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in TRIGRAM_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON bug_reports USING gin ({expression})"
        )


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_initial"),
    ]

    operations = [
        # assigned_to=…: one assignee's reports in priority order, instead of sorting them all.
        migrations.RemoveIndex(
            model_name="bugreport",
            name="bug_reports_assignee_idx",
        ),
        migrations.AddIndex(
            model_name="bugreport",
            index=models.Index(
                fields=["assignee_id", "severity_rank", "sla_due_at", "created_at", "id"],
                name="bug_reports_assignee_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="bugreport",
            index=models.Index(
                condition=models.Q(("duplicate_of__isnull", True)),
                fields=["severity_rank", "sla_due_at", "created_at", "id"],
                name="bug_reports_priority_idx",
            ),
        ),
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes, elidable=False),
    ]
