"""The README's regression table, row by row, over HTTP: with and without releases."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import override_settings

pytestmark = pytest.mark.django_db

REPORTS = "/api/bug-reports"
RELEASES = "/api/telemetry/releases"
SEEN = "a" * 40  # the release of the first occurrence, before the fix
NEW = "b" * 40
NAMED = "c" * 40
DEPLOYED = "d" * 40
TRACE = """Traceback (most recent call last):
  File "/srv/app/shop/checkout.py", line {line}, in pay
    charge(card)
ValueError: card declined
"""

# Each row of the README's table (its first cell, exactly) → what the occurrence carries, what
# the registry and the tracker say, and whether the fixed canonical reopens.
ROWS = {
    "none": {"release": None, "reopens": True},
    "one never seen nor deployed before the resolution": {"release": NEW, "reopens": True},
    "one the registry shows deployed only after the resolution": {
        "release": DEPLOYED,
        "deployed": "after",
        "reopens": True,
    },
    "the one named at resolution (`resolved_in_release`; a prefix of 7+ characters matches its "
    "full form)": {"release": NAMED[:9], "resolved_in": NAMED, "reopens": False},
    "one the group had seen before the resolution": {"release": SEEN, "reopens": False},
    "one the registry shows deployed (anywhere) before the resolution": {
        "release": DEPLOYED,
        "deployed": "before",
        "reopens": False,
    },
    "none in the body, the tracker's `RELEASE_SHA` set to one the group had seen": {
        "release": None,
        "tracker_release": SEEN,
        "reopens": False,
    },
}


def readme_rows() -> list[str]:
    text = (settings.BASE_DIR / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| the occurrence's release |") :]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.strip().startswith("|"):
            break
        rows.append(re.split(r"(?<!`)\|(?!`)", line.strip())[1].strip())
    return rows


def test_every_row_of_the_readme_table_is_played_here():
    assert readme_rows() == list(ROWS)


def submit(client, line, release=None):
    body = {"title": "Card declined at checkout", "stack_trace": TRACE.format(line=line)}
    if release:
        body["release_sha"] = release
    response = client.post(REPORTS, body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def record_release(client, sha, at):
    body = {"sha": sha, "environment": "production", "deployed_at": at.isoformat()}
    assert client.post(RELEASES, body, format="json").status_code == 201


def make_done(client, report, how, resolved_in=None):
    if how == "resolve":
        body = {"resolved_in_release": resolved_in} if resolved_in else {}
        response = client.post(f"{REPORTS}/{report['id']}/resolve", body, format="json")
    else:
        response = client.patch(f"{REPORTS}/{report['id']}", {"status": "closed"}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["status"]


# Resolved and closed canonicals alike; a release is named at resolution only.
PLAYS = [(row, how) for row in ROWS for how in ("resolve", "close")]
PLAYS = [(row, how) for row, how in PLAYS if how == "resolve" or "resolved_in" not in ROWS[row]]


@pytest.mark.parametrize(("row", "how"), PLAYS)
def test_a_fixed_canonical_reopens_as_the_table_says(admin_client, row, how):
    case = ROWS[row]
    with override_settings(RELEASE_SHA=""):
        first = submit(admin_client, line=10, release=SEEN)
    if case.get("deployed") == "before":
        record_release(admin_client, DEPLOYED, datetime.now(UTC) - timedelta(days=1))
    done = make_done(admin_client, first, how, case.get("resolved_in"))
    if case.get("deployed") == "after":
        record_release(admin_client, DEPLOYED, datetime.now(UTC) + timedelta(minutes=1))

    with override_settings(RELEASE_SHA=case.get("tracker_release", "")):
        occurrence = submit(admin_client, line=20, release=case["release"])

    canonical = admin_client.get(f"{REPORTS}/{first['id']}").json()
    history = admin_client.get(f"{REPORTS}/{first['id']}/events").json()["results"]
    regressed = [event for event in history if event["kind"] == "regressed"]
    assert occurrence["duplicate_of"] == first["id"]
    assert canonical["occurrences"] == 2
    if case["reopens"]:
        assert canonical["status"] == "triaged"
        assert len(regressed) == 1
    else:
        assert canonical["status"] == done
        assert regressed == []
        assert occurrence["status"] == done  # it follows its fixed canonical
