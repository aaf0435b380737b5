"""A delivery's report: the API's compact view, read for many reports in one query."""

import json

import pytest
from rest_framework.renderers import JSONRenderer

from reports.claims import report_claim
from tests.factories import make_report
from webhooks.payloads import compact_reports

pytestmark = pytest.mark.django_db


def test_compact_reports_are_the_apis_compact_view_from_one_query(
    agent_client, django_assert_num_queries
):
    reports = [make_report(title=f"Crash {name}") for name in ("alpha", "beta", "gamma")]
    for n, report in enumerate(reports[:2]):
        report_claim(report_id=report.pk, actor=f"agent-{n}", lease_seconds=600)
    with django_assert_num_queries(1):  # claimed rows too: no column read after the fact
        shown = compact_reports({report.pk for report in reports})
    for report in reports:
        api = agent_client.get(f"/api/bug-reports/{report.pk}?view=compact").json()
        assert json.loads(JSONRenderer().render(shown[report.pk])) == api
