from django.db import migrations, models


def keep_the_first_recorded(apps, schema_editor):
    """Rows recorded again for a sha and environment (before this rule) go; the first stays."""
    Release = apps.get_model("telemetry", "Release")
    first_ids = (
        Release.objects.values("sha", "environment")
        .annotate(first_id=models.Min("id"))
        .values_list("first_id", flat=True)
    )
    Release.objects.exclude(id__in=list(first_ids)).delete()


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="release", name="releases_unique_deploy"),
        migrations.RunPython(keep_the_first_recorded, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="release",
            constraint=models.UniqueConstraint(
                fields=("sha", "environment"), name="releases_one_per_environment"
            ),
        ),
    ]
