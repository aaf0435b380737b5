"""`bt`: the bugtracker from a shell. Exit 0 done, 1 error, 2 usage, 3 nothing to claim.

Claim tokens are kept in a private file (`BT_STATE_DIR`, default
`$XDG_STATE_HOME/bugtracker` or ~/.local/state/bugtracker), per server and key, and sent
by `note`, `heartbeat`, `release`, `resolve` and `verify`; `bt` never prints them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .api import (
    RELEASE_REASONS,
    SEVERITIES,
    AmbiguousId,
    ApiError,
    BugtrackerClient,
    changed,
    write_as_holder,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3


class ClaimFile:
    """Tokens of the claims `bt` made, by report id, for one server and key (mode 0600)."""

    def __init__(self, api: BugtrackerClient):
        root = os.environ.get("BT_STATE_DIR") or os.path.join(
            os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"),
            "bugtracker",
        )
        who = hashlib.sha256(f"{api.base_url}\n{api.api_key or ''}".encode()).hexdigest()[:16]
        self.path = Path(root) / f"claims-{who}.json"

    def load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def token(self, report_id: str) -> str | None:
        return self.load().get(report_id)

    def ids(self) -> list[str]:
        return list(self.load())

    def put(self, report_id: str, token: str | None) -> None:
        claims = self.load()
        if token is None:
            if claims.pop(report_id, None) is None:
                return
        else:
            claims[report_id] = token
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(claims, handle)
        tmp.replace(self.path)


class Output:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.console = Console()
        self.errors = Console(stderr=True)

    def data(self, value: Any, render=None) -> None:
        if self.as_json or render is None:
            print(json.dumps(value, indent=2, ensure_ascii=False, default=str))
        else:
            render(value)

    def reports(self, reports: list[dict], title: str | None = None) -> None:
        table = Table(title=title, show_lines=False)
        for column in ("id", "sev", "status", "component", "title", "claim", "occ"):
            table.add_column(column, overflow="fold" if column == "title" else "ellipsis")
        for report in reports:
            claim = report.get("claim") or {}
            table.add_row(
                str(report["id"])[:8],
                report.get("severity") or "",
                report.get("status") or "",
                report.get("component") or "",
                report.get("title") or "",
                claim.get("holder") or "",
                str(report.get("occurrences", "")),
            )
        self.console.print(table)

    def report(self, report: dict) -> None:
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in report.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            table.add_row(name, shown)
        self.console.print(table)

    def claimed(self, claim: dict) -> None:
        self.reports([claim["report"]], title="claimed")
        if "context" in claim:
            self.console.print_json(data=claim["context"])

    def error(self, text: str) -> None:
        self.errors.print(f"bt: {text}", markup=False, highlight=False)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    top = argparse.ArgumentParser(
        prog="bt",
        parents=[common],
        description=(
            "The bugtracker from a shell. BUGTRACKER_URL and BUGTRACKER_API_KEY say where and "
            "who. Exit codes: 0 done, 1 error, 2 usage, 3 nothing to claim."
        ),
    )
    top.add_argument("--url", help="the server's root (overrides BUGTRACKER_URL)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=text, description=text)

    command("whoami", "the key's name and role")
    listing = command("list", "reports, highest priority first (open ones unless --status)")
    listing.add_argument("--status", default="open", help="comma list; open, done (default open)")
    listing.add_argument("--severity", help="comma list")
    listing.add_argument("--component")
    listing.add_argument("--category")
    listing.add_argument("--assigned-to", help="a name, me or none")
    listing.add_argument("-q", "--query", help="text in title or description")
    listing.add_argument("--ordering")
    listing.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    listing.add_argument("--cursor", help="the next_cursor of a previous --json page")

    show = command("show", "one report")
    show.add_argument("id", help="a report id or its unique prefix")
    show.add_argument("--fields", help="comma list of fields to show")

    context = command("context", "everything to start work on a report")
    context.add_argument("id")
    context.add_argument("--max-chars", type=int)
    context.add_argument("--markdown", action="store_true")

    claim = command("claim-next", "claim the highest-priority open report (exit 3: none)")
    claim.add_argument("--wait", type=int, default=0, help="seconds to wait for one (0-60)")
    claim.add_argument("--component", help="comma list")
    claim.add_argument("--category", help="comma list")
    claim.add_argument("--severity", help="comma list")
    claim.add_argument("--min-severity", choices=SEVERITIES)
    claim.add_argument("--purpose", choices=("fix", "verify"))
    claim.add_argument("--lease", type=int, help="lease seconds (default: the server's, 900)")
    claim.add_argument(
        "--context", action="store_true", help="also print the report's context bundle"
    )
    claim.add_argument("--max-chars", type=int, help="the bundle's size limit (default 12000)")

    note = command("note", "add a note to a report ('-' reads the message from stdin)")
    note.add_argument("id")
    note.add_argument("message")
    note.add_argument("--kind", choices=("note", "agent_log"), default="note")

    beat = command("heartbeat", "extend the lease of a report you claimed")
    beat.add_argument("id")
    beat.add_argument("--lease", type=int)

    release = command("release", "give a claimed report back")
    release.add_argument("id")
    release.add_argument("--reason", choices=RELEASE_REASONS)
    release.add_argument("--note")

    resolve = command("resolve", "resolve a report you claimed, with evidence")
    resolve.add_argument("id")
    resolve.add_argument("--notes", required=True, help="what was wrong, what fixed it")
    resolve.add_argument("--commit", action="append", default=[], help="a commit sha (repeat)")
    resolve.add_argument("--pr", help="the pull request URL")
    resolve.add_argument("--test", action="append", default=[], help="a test id (repeat)")
    resolve.add_argument("--verify", action="store_true", help="hand over for verification")

    verify = command("verify", "record the verification of someone else's fix")
    verify.add_argument("id")
    outcome = verify.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--passed", dest="outcome", action="store_const", const="passed")
    outcome.add_argument("--failed", dest="outcome", action="store_const", const="failed")
    verify.add_argument("--note")

    submit = command("submit", "file a bug report")
    submit.add_argument("--title", required=True)
    submit.add_argument("--description")
    submit.add_argument("--severity", choices=SEVERITIES)
    submit.add_argument("--category")
    submit.add_argument("--component")
    submit.add_argument("--route")
    submit.add_argument("--environment")
    submit.add_argument("--stack-trace", help="the trace, or '-' to read it from stdin")

    command("status", "the tracker at a glance")
    return top


def run(args: argparse.Namespace, api: BugtrackerClient, out: Output) -> int:
    claims = ClaimFile(api)

    def report_id(prefix: str) -> str:
        return api.resolve_id(prefix, known=claims.ids())

    def as_holder(target: str, write):
        result, reclaimed = write_as_holder(api, target, claims.token(target), write)
        if reclaimed is not None:
            claims.put(target, reclaimed.token)
        return result

    def end_claim(target: str, write) -> None:
        """A write that ends the claim (release, resolve, verify): the kept token goes (a
        refused write keeps it) and the changed report is shown."""
        report = as_holder(target, write)
        claims.put(target, None)
        out.data(changed(report), out.report)

    match args.command:
        case "whoami":
            out.data(api.whoami(), lambda me: out.console.print(f"{me['name']} ({me['role']})"))
        case "list":
            page = api.list_reports(
                cursor=args.cursor,
                page_size=args.limit,
                view="compact",
                status=args.status,
                severity=args.severity,
                component=args.component,
                category=args.category,
                assigned_to=args.assigned_to,
                q=args.query,
                ordering=args.ordering,
            )
            out.data(
                {"results": page.results, "next_cursor": page.cursor},
                lambda value: out.reports(value["results"]),
            )
        case "show":
            fields = [f.strip() for f in args.fields.split(",")] if args.fields else None
            out.data(api.get_report(report_id(args.id), fields=fields), out.report)
        case "context":
            bundle = api.get_context(
                report_id(args.id), max_chars=args.max_chars, markdown=args.markdown
            )
            if isinstance(bundle, str):
                print(bundle)
            else:
                out.data(bundle)
        case "claim-next":
            claim = api.claim_next(
                severity=args.severity,
                min_severity=args.min_severity,
                component=args.component,
                category=args.category,
                purpose=args.purpose,
                wait=args.wait,
                lease_seconds=args.lease,
                view="compact",
                context=args.context,
                max_chars=args.max_chars,
            )
            if claim is None:
                out.data({"claimed": False}, lambda _: out.error("nothing to claim"))
                return EXIT_NOTHING
            claims.put(claim.report_id, claim.token)
            shown = {
                "claimed": True,
                "report_id": claim.report_id,
                "claim_expires_at": claim.expires_at,
                "claim_epoch": claim.epoch,
                "report": claim.report,
            }
            if claim.context is not None:
                shown["context"] = claim.context
            out.data(shown, out.claimed)
        case "note":
            target = report_id(args.id)
            message = sys.stdin.read() if args.message == "-" else args.message
            event = as_holder(
                target,
                lambda token: api.add_event(target, message=message, kind=args.kind, token=token),
            )
            out.data(event, out.report)
        case "heartbeat":
            target = report_id(args.id)
            token = claims.token(target)
            if token is None:
                out.error(f"no claim of {target} is kept here (claim it with bt)")
                return EXIT_ERROR
            report = api.heartbeat(target, token, lease_seconds=args.lease)
            out.data(changed(report), out.report)
        case "release":
            target = report_id(args.id)
            end_claim(
                target,
                lambda token: api.release(target, token=token, reason=args.reason, note=args.note),
            )
        case "resolve":
            target = report_id(args.id)
            end_claim(
                target,
                lambda token: api.resolve(
                    target,
                    token=token,
                    resolution_notes=args.notes,
                    commit_shas=args.commit,
                    pr_url=args.pr,
                    tests=args.test,
                    verify=args.verify or None,
                ),
            )
        case "verify":
            target = report_id(args.id)
            end_claim(
                target,
                lambda token: api.verify(target, outcome=args.outcome, note=args.note, token=token),
            )
        case "submit":
            trace = sys.stdin.read() if args.stack_trace == "-" else args.stack_trace
            report = api.submit(
                title=args.title,
                description=args.description,
                severity=args.severity,
                category=args.category,
                component=args.component,
                route=args.route,
                environment=args.environment,
                stack_trace=trace,
            )
            out.data(changed(report), out.report)
        case "status":
            out.data(api.summary(), out.report)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # usage errors exit 2 here
    out = Output(getattr(args, "json", False))
    try:
        with BugtrackerClient(args.url) as api:
            code = run(args, api, out)
    except AmbiguousId as error:
        out.error(str(error))
        code = EXIT_USAGE
    except ApiError as error:
        if out.as_json and error.problem:
            print(json.dumps(error.problem, indent=2), file=sys.stderr)
        out.error(str(error))
        code = EXIT_ERROR
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
