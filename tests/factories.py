from itertools import count

from reports.models import BugReport
from reports.services import report_create

_sequence = count(1)


def _letters(n: int) -> str:
    """1 → "a", 27 → "aa": distinct titles that dedup's number masking keeps apart."""
    word = ""
    while n:
        n, rest = divmod(n - 1, 26)
        word = chr(ord("a") + rest) + word
    return word


def make_report(*, actor: str = "tests", **fields) -> BugReport:
    """A report made through the real service, with sensible defaults."""
    n = next(_sequence)
    # Letters, not digits: "Report 1" and "Report 2" would be one bug to dedup.
    data = {"title": f"Report {_letters(n)}", "severity": "medium", "source": "user"}
    data.update(fields)
    return report_create(actor=actor, data=data)
