"""Deduplication through the API: what an agent and an admin see and can do."""

import pytest

from dedup.models import DedupGroup
from reports.models import BugReport, BugReportEvent
from tests.conftest import THROTTLE_QUERIES

pytestmark = pytest.mark.django_db

TRACE = """Traceback (most recent call last):
  File "/srv/app/server/app.py", line {line}, in dispatch
    return handler(request)
  File "/srv/app/server/{module}.py", line 64, in {function}
    result = compute(payload)
  File "/usr/lib/python3.11/site-packages/lib/core.py", line 508, in compute
    raise err
ValueError: invalid literal for int() with base 10: '{value}'
"""
REPORTS = "/api/bug-reports"
GROUPS = "/api/dedup/groups"


def body(bug="parse_amount", line=108, value="abc", **fields):
    data = {
        "title": f"ValueError in {bug}",
        "stack_trace": TRACE.format(line=line, module=f"billing/{bug}", function=bug, value=value),
        "component": "billing",
        "route": "/api/images/17",
    }
    data.update(fields)
    return data


def submit(client, **kwargs):
    response = client.post(REPORTS, body(**kwargs), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def ids(response):
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def get(client, report):
    return client.get(f"{REPORTS}/{report['id']}").json()


# Submission and listing ------------------------------------------------------------------------


def test_a_duplicate_submission_points_at_the_canonical_report(agent_client):
    first = submit(agent_client)
    second = submit(agent_client, line=115, value="x1", route="/api/images/99")

    assert first["duplicate_of"] is None
    assert second["duplicate_of"] == first["id"]
    assert second["dedup_group"] == first["dedup_group"]
    assert second["occurrences"] == 2
    assert second["repo_hints"] == [
        "/srv/app/server/billing/parse_amount.py",
        "/srv/app/server/app.py",
    ]
    canonical = get(agent_client, first)
    assert (canonical["occurrences"], canonical["duplicates_count"]) == (2, 1)


def test_the_list_hides_duplicates_unless_asked(agent_client):
    first = submit(agent_client)
    second = submit(agent_client, line=1)
    other = submit(agent_client, bug="refund")

    assert set(ids(agent_client.get(REPORTS))) == {first["id"], other["id"]}
    assert set(ids(agent_client.get(REPORTS, {"include_duplicates": "true"}))) == {
        first["id"],
        second["id"],
        other["id"],
    }
    assert ids(agent_client.get(REPORTS, {"duplicate_of": first["id"]})) == [second["id"]]
    assert ids(agent_client.get(REPORTS, {"ordering": "-occurrences"})) == [
        first["id"],
        other["id"],
    ]


def test_a_client_fingerprint_overrides_grouping(agent_client):
    first = submit(agent_client, fingerprint=["tenant-7", "{{ default }}"])
    same = submit(agent_client, line=3, fingerprint=["tenant-7", "{{ default }}"])
    other_tenant = submit(agent_client, fingerprint=["tenant-8", "{{ default }}"])
    forced = submit(agent_client, bug="refund", fingerprint=["tenant-7", "{{ default }}"])
    assert same["duplicate_of"] == first["id"]
    assert other_tenant["duplicate_of"] is None
    assert forced["duplicate_of"] is None
    assert submit(agent_client, bug="x", fingerprint=["billing-any"])["duplicate_of"] is None
    assert submit(agent_client, bug="y", fingerprint=["billing-any"])["duplicate_of"] is not None


def test_resolving_the_canonical_resolves_open_duplicates(admin_client):
    first = submit(admin_client)
    duplicates = [submit(admin_client, line=n) for n in range(3)]
    response = admin_client.post(f"{REPORTS}/{first['id']}/resolve", {}, format="json")
    assert response.status_code == 200, response.json()
    assert {get(admin_client, d)["status"] for d in duplicates} == {"resolved"}


# Regressions -----------------------------------------------------------------------------


def test_an_occurrence_from_the_same_release_is_counted_one_from_a_new_release_reopens(
    admin_client,
):
    first = submit(admin_client, release_sha="a" * 40)
    resolved = admin_client.post(f"{REPORTS}/{first['id']}/resolve", {}, format="json")
    assert resolved.json()["status"] == "resolved"

    stale = submit(admin_client, line=9, release_sha="a" * 40)
    canonical = get(admin_client, first)
    assert canonical["status"] == "resolved"
    assert canonical["occurrences"] == 2
    assert stale["duplicate_of"] == first["id"]

    submit(admin_client, line=10, release_sha="b" * 40)
    canonical = get(admin_client, first)
    assert canonical["status"] == "triaged"
    assert canonical["resolved_at"] is None
    assert canonical["occurrences"] == 3
    history = admin_client.get(f"{REPORTS}/{first['id']}/events").json()["results"]
    regressed = [e for e in history if e["kind"] == "regressed"]
    assert len(regressed) == 1
    assert regressed[0]["data"]["release"] == "b" * 40


# Merge and split --------------------------------------------------------------------------


def merge(client, report, into):
    return client.post(f"{REPORTS}/{report['id']}/merge", {"into": into["id"]}, format="json")


def split(client, report):
    return client.post(f"{REPORTS}/{report['id']}/split", format="json")


def test_merge_and_split_are_for_admins(agent_client, reporter_client, api_client, admin_client):
    a, b = submit(admin_client), submit(admin_client, bug="refund")
    for client, status in ((agent_client, 403), (reporter_client, 403), (api_client, 401)):
        assert merge(client, a, b).status_code == status
        assert split(client, a).status_code == status
    assert BugReport.objects.filter(duplicate_of__isnull=False).count() == 0


def test_merge_moves_a_report_and_its_duplicates_and_occurrences_add_up(admin_client):
    a = submit(admin_client)
    a_duplicates = [submit(admin_client, line=n) for n in range(2)]
    b = submit(admin_client, bug="refund")
    b_duplicate = submit(admin_client, bug="refund", line=2)

    response = merge(admin_client, a, b)
    assert response.status_code == 200, response.json()
    assert response.json()["duplicate_of"] == b["id"]
    assert response.json()["occurrences"] == 5
    for report in [a, *a_duplicates, b_duplicate]:
        shown = get(admin_client, report)
        assert shown["duplicate_of"] == b["id"]
        assert shown["dedup_group"] == b["dedup_group"]
    canonical = get(admin_client, b)
    assert (canonical["occurrences"], canonical["duplicates_count"]) == (5, 4)
    assert ids(admin_client.get(REPORTS)) == [b["id"]]
    assert BugReportEvent.objects.filter(kind="merged").count() == 4  # 3 moved + the target

    # The merge sticks: a's error now lands on b.
    later = submit(admin_client, line=77)
    assert later["duplicate_of"] == b["id"]
    assert get(admin_client, b)["occurrences"] == 6


def test_merging_into_a_duplicate_means_its_canonical_and_never_makes_chains(admin_client):
    a = submit(admin_client)
    b = submit(admin_client, bug="refund")
    b_duplicate = submit(admin_client, bug="refund", line=5)
    c = submit(admin_client, bug="payout")

    assert merge(admin_client, a, b_duplicate).json()["duplicate_of"] == b["id"]
    assert merge(admin_client, b, c).status_code == 200
    assert not BugReport.objects.filter(duplicate_of__duplicate_of__isnull=False).exists()
    assert set(BugReport.objects.exclude(pk=c["id"]).values_list("duplicate_of", flat=True)) == {
        BugReport.objects.get(pk=c["id"]).pk
    }
    assert get(admin_client, c)["occurrences"] == 4
    # Both earlier fingerprints now forward to c, directly.
    assert submit(admin_client, line=8)["duplicate_of"] == c["id"]
    assert submit(admin_client, bug="refund", line=9)["duplicate_of"] == c["id"]
    assert not DedupGroup.objects.filter(merged_into__merged_into__isnull=False).exists()


@pytest.mark.parametrize("target", ["itself", "own_duplicate", "its_canonical"])
def test_refused_merges_are_conflicts(admin_client, target):
    a = submit(admin_client)
    a_duplicate = submit(admin_client, line=5)
    report, into = {
        "itself": (a, a),
        "own_duplicate": (a, a_duplicate),
        "its_canonical": (a_duplicate, a),
    }[target]
    response = merge(admin_client, report, into)
    assert response.status_code == 409
    assert response["Content-Type"].startswith("application/problem+json")
    assert get(admin_client, a)["occurrences"] == 2


def test_merge_input_errors(admin_client):
    a = submit(admin_client)
    assert admin_client.post(f"{REPORTS}/{a['id']}/merge", {}, format="json").status_code == 400
    bad = admin_client.post(f"{REPORTS}/{a['id']}/merge", {"into": "nope"}, format="json")
    assert bad.status_code == 400 and "into" in bad.json()["errors"]
    unknown = merge(admin_client, a, {"id": "00000000-0000-4000-8000-000000000000"})
    assert unknown.status_code == 400 and "into" in unknown.json()["errors"]
    missing = merge(admin_client, {"id": "00000000-0000-4000-8000-000000000000"}, a)
    assert missing.status_code == 404


def test_split_detaches_a_duplicate_and_the_split_stays(admin_client):
    a = submit(admin_client)
    duplicate = submit(admin_client, line=5)
    other = submit(admin_client, line=6)

    response = split(admin_client, duplicate)
    assert response.status_code == 200, response.json()
    shown = response.json()
    assert shown["duplicate_of"] is None
    assert shown["dedup_group"] not in (None, a["dedup_group"])
    assert shown["occurrences"] == 1
    assert get(admin_client, a)["occurrences"] == 2
    assert get(admin_client, other)["duplicate_of"] == a["id"]
    assert [
        e["kind"] for e in admin_client.get(f"{REPORTS}/{duplicate['id']}/events").json()["results"]
    ][-1] == "split"

    # Later occurrences of its fingerprint go to the split-off report.
    later = submit(admin_client, line=7)
    assert later["duplicate_of"] == duplicate["id"]
    group = DedupGroup.objects.get(pk=shown["dedup_group"])
    assert (group.occurrences, str(group.split_from_id)) == (2, a["dedup_group"])
    assert split(admin_client, a).status_code == 409


def test_a_report_merged_away_can_be_split_back(admin_client):
    a = submit(admin_client)
    b = submit(admin_client, bug="refund")
    merge(admin_client, a, b)
    back = split(admin_client, a).json()
    assert back["duplicate_of"] is None
    assert get(admin_client, b)["occurrences"] == 1
    assert submit(admin_client, line=1)["duplicate_of"] == a["id"]


# Groups ------------------------------------------------------------------------------------


def test_groups_are_listed_most_frequent_first_with_their_canonical(agent_client):
    rare = submit(agent_client, bug="refund")
    common = submit(agent_client)
    for n in range(3):
        submit(agent_client, line=n)

    response = agent_client.get(GROUPS)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["canonical"]["id"] for row in rows] == [common["id"], rare["id"]]
    top = rows[0]
    assert top["occurrences"] == 4
    assert top["fingerprint"] == BugReport.objects.get(pk=common["id"]).fingerprint
    assert top["algorithm_version"] == 1
    assert top["inputs"]["route"] == "/api/images/{id}"
    assert top["first_seen"] <= top["last_seen"]
    assert top["canonical"]["title"] == "ValueError in parse_amount"

    recent = agent_client.get(GROUPS, {"ordering": "-last_seen"}).json()["results"]
    assert [row["canonical"]["id"] for row in recent] == [common["id"], rare["id"]]
    assert agent_client.get(GROUPS, {"ordering": "size"}).status_code == 400

    detail = agent_client.get(f"{GROUPS}/{top['id']}")
    assert detail.status_code == 200 and detail.json() == top
    assert agent_client.get(f"{GROUPS}/{top['id']}/").status_code == 200
    assert agent_client.get(f"{GROUPS}/not-a-uuid").status_code == 404
    assert agent_client.get(f"{GROUPS}/00000000-0000-4000-8000-000000000000").status_code == 404


def test_groups_paginate_by_cursor_and_hide_merged_ones(admin_client, reporter_client):
    reports = [submit(admin_client, bug=f"bug_{chr(97 + n)}") for n in range(5)]
    merge(admin_client, reports[0], reports[1])

    seen, url = [], GROUPS + "?page_size=2"
    while url:
        page = admin_client.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 4
    everything = admin_client.get(GROUPS, {"include_merged": "true", "page_size": 50}).json()
    assert len(everything["results"]) == 5
    assert admin_client.get(GROUPS, {"active": "maybe"}).status_code == 400
    assert reporter_client.get(GROUPS).status_code == 403


def test_listing_groups_costs_the_same_few_queries_for_any_page(
    agent_client, django_assert_max_num_queries
):
    for n in range(20):
        submit(agent_client, bug=f"bug_{chr(97 + n)}")
    with django_assert_max_num_queries(4 + THROTTLE_QUERIES):
        response = agent_client.get(GROUPS, {"page_size": 20})
    assert len(response.json()["results"]) == 20
