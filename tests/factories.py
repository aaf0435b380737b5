from itertools import count

from remediation import services as automation
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


def failed_worker_run(
    *, holder: str = "worker:h:1", exit_code: int = 1, output_tail: str = "", error: str = ""
) -> BugReport:
    """The worker claims the next automatable report, starts a run and records its failure:
    an attempt of the worker's, ended `failed`. Returns the report it took."""
    report, token = automation.report_claim_for_automation(actor=holder)
    run = automation.run_start(
        report_id=report.pk, actor=holder, claim_token=token, command=["fix"]
    )
    automation.report_run_failed(
        report_id=report.pk,
        run_id=run.pk,
        actor=holder,
        claim_token=token,
        exit_code=exit_code,
        output_tail=output_tail,
        error=error,
    )
    return report
