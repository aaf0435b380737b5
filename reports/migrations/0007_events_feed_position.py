"""PostgreSQL: each event carries its writing transaction's id, the changes feed's position.

Existing events get 0 (they come first, in id order); the default fills new ones from every
write path. See reports/feed.py for why a transaction id and not a sequence.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE bug_report_events ADD COLUMN txid bigint NOT NULL DEFAULT 0;
ALTER TABLE bug_report_events ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX bug_events_feed_idx ON bug_report_events (txid, id);
"""

BACKWARD = """
DROP INDEX IF EXISTS bug_events_feed_idx;
ALTER TABLE bug_report_events DROP COLUMN IF EXISTS txid;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("reports", "0006_claimable_notify")]

    operations = [migrations.RunPython(forward, backward)]
