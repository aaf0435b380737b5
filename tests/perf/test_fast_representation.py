import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from reports import claims, services
from reports.selectors import report_list
from reports.serializers import BugReportSerializer
from tests.factories import make_report

TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/billing/views.py", line 10, in charge\n'
    "KeyError: 'coupon'\n"
)


def rendered(data) -> dict:
    return json.loads(JSONRenderer().render(data))


@pytest.mark.django_db
def test_the_fast_report_representation_is_what_drf_renders():
    """BugReportSerializer reads plain fields straight off the row; DRF's generic path is
    the reference, for reports in every shape an API caller sees."""
    claimed = make_report(title="claimed")
    claims.report_claim(report_id=claimed.pk, actor="agent-1")
    resolved = make_report(title="resolved", severity="critical", stack_trace=TRACE)
    services.report_transition(report_id=resolved.pk, to_status="resolved", actor="a")
    services.report_update(
        report_id=resolved.pk,
        actor="a",
        data={"metadata": {"k": [1, "é"]}, "commit_shas": ["abc1234"]},
    )
    canonical = make_report(title="canonical", stack_trace=TRACE)
    make_report(title="duplicate", duplicate_of=canonical, stack_trace=TRACE)
    make_report(title="nulls", category=None, component=None, trace_id=None, request_id=None)
    make_report(title="unsaved-ish", next_attempt_at=timezone.now() + timedelta(hours=1))

    now = timezone.now()
    reports = list(report_list())
    assert len(reports) == 6
    for report in reports:
        serializer = BugReportSerializer(context={"now": now})
        fast = serializer.to_representation(report)
        generic = serializers.ModelSerializer.to_representation(serializer, report)
        assert list(fast) == list(generic)
        assert rendered(fast) == rendered(generic), report.title


@pytest.mark.django_db
def test_an_unsaved_report_with_enum_defaults_renders_plain_values():
    report = services.report_build(data={"title": "fresh"})
    report.group_occurrences, report.duplicates_total = 1, 0
    serializer = BugReportSerializer(context={"now": timezone.now()})
    fast = serializer.to_representation(report)
    assert fast["status"] == "new" and type(fast["status"]) is str
    assert rendered(fast) == rendered(
        serializers.ModelSerializer.to_representation(serializer, report)
    )
