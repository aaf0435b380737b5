# AgentRun now lives in the remediation app. State only: the table `agent_runs` stays as it
# is (remediation/migrations/0001_initial.py takes the model over).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0003_fewer_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AgentRun")],
            database_operations=[],
        ),
    ]
