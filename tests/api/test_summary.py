import json
from io import StringIO

import pytest
from django.core.management import call_command

from reports.models import BugReport
from tests.factories import make_report

pytestmark = pytest.mark.django_db


def test_summary_is_the_same_object_as_bugstatus_json(agent_client):
    make_report(title="Alpha fails", severity="critical")
    make_report(title="Beta fails", severity="low")
    resolved = make_report(title="Gamma fails", severity="high")
    BugReport.objects.filter(pk=resolved.pk).update(status="resolved")

    response = agent_client.get("/api/bug-reports/summary")
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["open"], body["done"]) == (3, 2, 1)
    assert body["by_severity"]["critical"] == 1

    out = StringIO()
    call_command("bugstatus", "--json", stdout=out)
    command = json.loads(out.getvalue())
    volatile = {"oldest_open_age_seconds", "generated_at"}
    assert {k: v for k, v in body.items() if k not in volatile} == {
        k: v for k, v in command.items() if k not in volatile
    }


def test_summary_needs_an_agent(reporter_client):
    assert reporter_client.get("/api/bug-reports/summary").status_code == 403
