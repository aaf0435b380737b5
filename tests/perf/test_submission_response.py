import pytest

from tests.factories import make_report

TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/billing/views.py", line 10, in charge\n'
    '  File "/srv/app/billing/services.py", line 20, in apply\n'
    "KeyError: 'coupon'\n"
)


@pytest.mark.django_db
@pytest.mark.parametrize("occurrence", [1, 2, 3])
def test_a_submission_answers_what_reading_the_report_back_shows(
    reporter_client, agent_client, occurrence
):
    """The 201 body is built without reading the report back: it must match a later GET."""
    for _ in range(occurrence - 1):
        reporter_client.post(
            "/api/bug-reports", {"title": "Coupon crash", "stack_trace": TRACE}, format="json"
        )
    created = reporter_client.post(
        "/api/bug-reports",
        {"title": "Coupon crash", "stack_trace": TRACE, "severity": "high", "metadata": {"a": 1}},
        format="json",
        HTTP_TRACEPARENT="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert created.status_code == 201, created.content
    fetched = agent_client.get(created["Location"])
    assert created.json() == fetched.json()
    assert created["ETag"] == fetched["ETag"]
    assert created.json()["occurrences"] == occurrence


@pytest.mark.django_db
def test_a_report_read_by_id_is_found_and_an_unknown_one_is_404(agent_client):
    report = make_report()
    assert agent_client.get(f"/api/bug-reports/{report.pk}").json()["id"] == str(report.pk)
    missing = agent_client.get("/api/bug-reports/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["claim-next", "claim"])
def test_a_claim_answers_with_the_report_as_reading_it_back_shows(agent_client, how):
    """The claimed report in the response is the in-memory one plus its counts."""
    canonical = make_report(title="Coupon crash", stack_trace=TRACE, severity="critical")
    make_report(title="Coupon crash", stack_trace=TRACE)
    path = (
        f"/api/bug-reports/{canonical.pk}/claim"
        if how == "claim"
        else "/api/bug-reports/claim-next"
    )
    claimed = agent_client.post(path, {}, format="json")
    assert claimed.status_code == 200, claimed.content
    shown = claimed.json()["report"]
    fetched = agent_client.get(f"/api/bug-reports/{canonical.pk}").json()
    assert shown == fetched
    assert shown["duplicates_count"] == 1 and shown["occurrences"] == 2
