"""PostgreSQL: NOTIFY bugtracker_claimable when a canonical report becomes claimable.

A wake-up for claim-next's long-poll (reports/waiting.py), sent on commit, from every path
that writes reports (the ORM, the one-statement submission, bulk imports): submitted,
released, reopened, its expired lease swept. The claim itself still applies the full rule;
a notification that matches nothing any more (claimed meanwhile) costs a waiter one look.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION bug_reports_notify_claimable() RETURNS trigger AS $$
BEGIN
    IF NEW.duplicate_of_id IS NULL AND NEW.claim_holder IS NULL
       AND NEW.status IN ('new', 'triaged', 'in_progress')
       AND (TG_OP = 'INSERT' OR OLD.duplicate_of_id IS NOT NULL
            OR OLD.claim_holder IS NOT NULL
            OR OLD.status NOT IN ('new', 'triaged', 'in_progress')) THEN
        PERFORM pg_notify('bugtracker_claimable', json_build_object(
            'id', NEW.id, 'severity', NEW.severity,
            'category', NEW.category, 'component', NEW.component)::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER bug_reports_claimable_notify
    AFTER INSERT OR UPDATE OF status, claim_holder, duplicate_of_id ON bug_reports
    FOR EACH ROW EXECUTE FUNCTION bug_reports_notify_claimable();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS bug_reports_claimable_notify ON bug_reports;
DROP FUNCTION IF EXISTS bug_reports_notify_claimable();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("reports", "0005_agent_loop")]

    operations = [migrations.RunPython(forward, backward)]
