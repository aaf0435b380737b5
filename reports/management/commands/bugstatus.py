"""`bugstatus`: the tracker at a glance for humans, as JSON for scripts, `--check` for cron."""

import json
import sys
import uuid
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.models import DONE_STATUSES, OPEN_STATUSES, BugReport, Severity, Status
from reports.selectors import report_events, report_list
from reports.serializers import BugReportSerializer, EventSerializer
from reports.summary import backlog_alerts, report_summary

DEFAULT_LIMIT = 50
STATUS_GROUPS = {"open": list(OPEN_STATUSES), "done": list(DONE_STATUSES)}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "green"}


class Command(BaseCommand):
    help = (
        "The state of the tracker: counts by status and severity, SLA breaches, oldest open "
        "report, top duplicate groups and backlog alerts. `bugstatus ID` shows one report; "
        "--status/--severity/--limit list reports; --check exits 1 when a backlog alert fires."
    )

    def add_arguments(self, parser):
        parser.add_argument("report", nargs="?", metavar="ID", help="a report id or legacy id")
        parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
        parser.add_argument(
            "--status", help="comma list of statuses to list (also: open, done)", default=None
        )
        parser.add_argument("--severity", help="comma list of severities to list", default=None)
        parser.add_argument(
            "--limit", type=int, default=None, help=f"reports to list (default {DEFAULT_LIMIT})"
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="print the backlog alerts and exit 1 when one fires (for cron and monitoring)",
        )

    def handle(self, *args, **options):
        self.console = _console(self.stdout)
        if options["check"]:
            return self._check()
        if options["report"]:
            return self._one(options["report"], as_json=options["json"])
        if options["status"] or options["severity"] or options["limit"] is not None:
            return self._list(options)
        summary = report_summary()
        if options["json"]:
            self._json(summary)
        else:
            self._summary(summary)

    # -- --check ---------------------------------------------------------------------------

    def _check(self):
        alerts = backlog_alerts()
        if not alerts:
            self.stdout.write("OK: no backlog alert.")
            return
        for alert in alerts:
            self.stdout.write(f"ALERT: {alert}")
        self.stdout.flush()
        sys.exit(1)

    # -- the summary -----------------------------------------------------------------------

    def _summary(self, summary: dict) -> None:
        con = self.console
        matrix = Table(
            title="Reports by status and severity", box=box.SIMPLE_HEAD, title_justify="left"
        )
        matrix.add_column("status")
        for severity in Severity.values:
            matrix.add_column(severity, justify="right", style=SEVERITY_STYLE[severity])
        matrix.add_column("total", justify="right", style="bold")
        for status in Status.values:
            row = summary["by_status_severity"][status]
            matrix.add_row(
                status, *(str(row[s]) for s in Severity.values), str(summary["by_status"][status])
            )
        matrix.add_section()
        matrix.add_row(
            "total",
            *(str(summary["by_severity"][s]) for s in Severity.values),
            str(summary["total"]),
            style="bold",
        )
        con.print(matrix)

        overview = Table(box=None, show_header=False, pad_edge=False)
        overview.add_column(style="bold")
        overview.add_column()
        breached = summary["sla_breached"]
        overview.add_row("open", str(summary["open"]))
        overview.add_row("done", str(summary["done"]))
        overview.add_row("SLA breached", f"[red]{breached}[/red]" if breached else "0")
        waiting = summary["needs_human"]
        overview.add_row("needs a human", f"[yellow]{waiting}[/yellow]" if waiting else "0")
        overview.add_row(
            "canonical / duplicates", f"{summary['canonical']} / {summary['duplicates']}"
        )
        oldest = summary["oldest_open_age_seconds"]
        overview.add_row(
            "oldest open",
            f"{_age(oldest)} (since {summary['oldest_open_at']})" if oldest is not None else "none",
        )
        con.print(overview)
        con.print()

        if summary["top_groups"]:
            groups = Table(title="Top duplicate groups", box=box.SIMPLE_HEAD, title_justify="left")
            groups.add_column("occurrences", justify="right")
            groups.add_column("canonical")
            groups.add_column("status")
            groups.add_column("title", overflow="ellipsis", no_wrap=True, max_width=60)
            groups.add_column("last seen")
            for group in summary["top_groups"]:
                groups.add_row(
                    str(group["occurrences"]),
                    group["canonical"],
                    group["status"],
                    _escape(group["title"]),
                    group["last_seen"][:19],
                )
            con.print(groups)
        else:
            con.print("Top duplicate groups: none")

        alerts = summary["backlog_alerts"]
        if alerts:
            for alert in alerts:
                con.print(f"[bold red]ALERT[/bold red] {alert}", highlight=False)
        else:
            con.print("[green]Backlog alerts: none[/green]")

    # -- one report ------------------------------------------------------------------------

    def _one(self, ident: str, *, as_json: bool) -> None:
        report = _find(ident)
        events = list(report_events(report_id=report.pk))
        # Its remediation runs, through the relation remediation adds (reports never imports it).
        runs = list(report.runs.order_by("started_at", "id"))
        if as_json:
            data = dict(BugReportSerializer(report).data)
            data["events"] = EventSerializer(events, many=True).data
            data["runs"] = [_run_dict(run) for run in runs]
            self._json(data)
            return
        con = self.console
        con.print(f"[bold]Report {report.pk}[/bold]")
        fields = Table(box=None, show_header=False)
        fields.add_column(style="bold")
        fields.add_column(overflow="fold")
        sla_due = _when(report.sla_due_at) + (" (breached)" if report.sla_breached else "")
        for label, value in [
            ("title", report.title),
            ("status", report.status),
            ("severity", report.severity),
            ("source", report.source),
            ("category", report.category),
            ("component", report.component),
            ("route", report.route),
            ("environment", report.environment),
            ("assignee", report.assignee_id),
            (
                "claim",
                f"{report.claim_holder} until {report.claim_expires_at:%Y-%m-%d %H:%M:%S}"
                if report.claim_is_live()
                else None,
            ),
            ("reporter", report.reporter_id),
            ("created", _when(report.created_at)),
            ("updated", _when(report.updated_at)),
            ("resolved", _when(report.resolved_at)),
            ("SLA due", sla_due),
            ("duplicate of", report.duplicate_of_id),
            (
                "trace / request",
                " / ".join(filter(None, [report.trace_id, report.request_id])) or None,
            ),
            ("release", report.release_sha),
            (
                "automation",
                f"{'on' if report.automation_enabled else 'off'}, {report.attempts} attempts",
            ),
            ("resolution", report.resolution_notes or None),
            ("commits", ", ".join(report.commit_shas) or None),
            ("legacy id", report.legacy_id),
            ("version", report.version),
        ]:
            if value in (None, ""):
                continue
            cell = _escape(str(value))
            if label == "severity":
                cell = f"[{SEVERITY_STYLE[report.severity]}]{cell}[/]"
            elif label == "SLA due" and report.sla_breached:
                cell = f"[red]{cell}[/red]"
            fields.add_row(label, cell)
        con.print(fields)
        if report.description:
            con.print(f"\n[bold]description[/bold]\n{_escape(report.description)}")
        if report.stack_trace:
            con.print(f"\n[bold]stack trace[/bold]\n{_escape(report.stack_trace)}")
        con.print()
        history = Table(title=f"Events ({len(events)})", box=box.SIMPLE_HEAD, title_justify="left")
        history.add_column("at", no_wrap=True)
        history.add_column("kind")
        history.add_column("actor")
        history.add_column("message", overflow="fold")
        for event in events:
            history.add_row(
                _when(event.created_at), event.kind, event.actor, _escape(event.message)
            )
        con.print(history)
        if runs:
            table = Table(title=f"Runs ({len(runs)})", box=box.SIMPLE_HEAD, title_justify="left")
            for column in ("attempt", "runner", "started", "duration", "outcome", "exit", "error"):
                table.add_column(column)
            for run in runs:
                duration = run.duration_seconds
                table.add_row(
                    str(run.attempt),
                    run.runner,
                    _when(run.started_at),
                    f"{duration:.1f}s" if duration is not None else "running",
                    run.outcome or "",
                    "" if run.exit_code is None else str(run.exit_code),
                    _escape(run.error[:200]),
                )
            con.print(table)
        else:
            con.print("Runs: none")

    # -- a list ----------------------------------------------------------------------------

    def _list(self, options) -> None:
        statuses = _choices(options["status"], Status.values, STATUS_GROUPS, "--status")
        severities = _choices(options["severity"], Severity.values, {}, "--severity")
        limit = DEFAULT_LIMIT if options["limit"] is None else options["limit"]
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        reports = report_list()
        if statuses:
            reports = reports.filter(status__in=statuses)
        if severities:
            reports = reports.filter(severity__in=severities)
        total = reports.count()
        rows = list(reports.order_by("severity_rank", "sla_due_at", "created_at", "id")[:limit])
        if options["json"]:
            self._json({"count": total, "results": BugReportSerializer(rows, many=True).data})
            return
        now = timezone.now()
        table = Table(
            title=f"{len(rows)} of {total} reports", box=box.SIMPLE_HEAD, title_justify="left"
        )
        table.add_column("id", no_wrap=True)
        table.add_column("severity")
        table.add_column("status")
        table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=50)
        table.add_column("age", justify="right")
        table.add_column("SLA")
        table.add_column("assignee")
        table.add_column("needs human")
        table.add_column("duplicate of", no_wrap=True)
        for report in rows:
            table.add_row(
                str(report.pk),
                f"[{SEVERITY_STYLE[report.severity]}]{report.severity}[/]",
                report.status,
                _escape(report.title),
                _age((now - report.created_at).total_seconds()),
                "[red]breached[/red]" if report.sla_breached else "",
                report.assignee_id or "",
                "yes" if report.needs_human else "",
                str(report.duplicate_of_id or ""),
            )
        self.console.print(table)

    def _json(self, data) -> None:
        self.stdout.write(json.dumps(data, indent=2, cls=DjangoJSONEncoder))


def _console(stdout) -> Console:
    """Colour and box drawing on a terminal; plain text anywhere else (pipes, files, tests)."""
    stream = getattr(stdout, "_out", stdout)
    tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(
        file=stream,
        highlight=False,
        force_terminal=tty,
        no_color=not tty,
        color_system="auto" if tty else None,
        width=None if tty else 160,
        emoji=False,
    )


def _find(ident: str) -> BugReport:
    try:
        pk = uuid.UUID(ident)
    except ValueError:
        pk = None
    queryset = report_list()
    report = (queryset.filter(pk=pk).first() if pk else None) or queryset.filter(
        legacy_id=ident
    ).first()
    if report is None:
        raise CommandError(f"No bug report {ident!r} (give its id or its legacy id).")
    return report


def _choices(value: str | None, allowed: list[str], groups: dict, flag: str) -> list[str]:
    if not value:
        return []
    chosen: list[str] = []
    for part in (p.strip().lower() for p in value.split(",") if p.strip()):
        if part in groups:
            chosen.extend(groups[part])
        elif part in allowed:
            chosen.append(part)
        else:
            options = ", ".join([*allowed, *groups])
            raise CommandError(f"{flag}: unknown value {part!r}; choose from {options}.")
    return chosen


def _run_dict(run) -> dict:
    return {
        "id": run.pk,
        "attempt": run.attempt,
        "runner": run.runner,
        "command": run.command,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_seconds": run.duration_seconds,
        "exit_code": run.exit_code,
        "outcome": run.outcome,
        "output_tail": run.output_tail,
        "error": run.error,
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _when(value: datetime | None) -> str:
    return "" if value is None else timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def _escape(text: str) -> str:
    return escape(text or "")
