from itertools import count

from reports.models import BugReport
from reports.services import report_create

_sequence = count(1)


def make_report(*, actor: str = "tests", **fields) -> BugReport:
    """A report made through the real service, with sensible defaults."""
    n = next(_sequence)
    data = {"title": f"Report {n}", "severity": "medium", "source": "user"}
    data.update(fields)
    return report_create(actor=actor, data=data)
