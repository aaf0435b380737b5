"""`bugstatus`: the tracker at a glance for humans, as JSON for scripts, `--check` for cron."""

import json
import os
import re
import sys
import uuid
from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reports.models import DONE_STATUSES, OPEN_STATUSES, BugReport, Severity, Status
from reports.selectors import report_events, report_list
from reports.serializers import BugReportSerializer, EventSerializer
from reports.summary import backlog_alerts, backlog_state, report_summary

DEFAULT_LIMIT = 50
# Ids in lists are shown by their first 8 characters, as git shows commits; any unique prefix
# of at least 4 hex digits finds a report.
SHORT_ID = 8
MIN_PREFIX = 4
_HEX_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},32}}")
# Off a terminal and without COLUMNS: wide enough that lines keep their titles.
PIPE_WIDTH = 160
# Optional list columns (assignee, age, duplicate of) are shown only while the title keeps this.
TITLE_MIN = 30
ASSIGNEE_MAX = 32
STATUS_GROUPS = {"open": list(OPEN_STATUSES), "done": list(DONE_STATUSES)}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "green"}


class Command(BaseCommand):
    help = (
        "The state of the tracker: counts by status and severity, SLA breaches, oldest open "
        "report, top duplicate groups and backlog alerts. `bugstatus ID` shows one report; "
        "--status/--severity/--limit list reports; --check exits 1 when a backlog alert fires."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "report",
            nargs="?",
            metavar="ID",
            help=f"a report id, any unique prefix of it (at least {MIN_PREFIX} characters), "
            "or a legacy id",
        )
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
            help="print the backlog alerts (with --json: as JSON) and exit 1 when one fires "
            "(for cron and monitoring)",
        )

    def handle(self, *args, **options):
        self.console = _console(self.stdout)
        if options["check"]:
            return self._check(as_json=options["json"])
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

    def _check(self, *, as_json: bool):
        state = backlog_state()
        alerts = backlog_alerts(
            open_incidents=state["open_incidents"],
            open_count=state["open"],
            oldest_open_age_seconds=state["oldest_open_age_seconds"],
        )
        if as_json:
            self._json(
                {
                    "ok": not alerts,
                    "alerts": alerts,
                    **state,
                    "thresholds": {
                        "max_open": settings.BACKLOG_ALERT_MAX_OPEN,
                        "max_age_hours": settings.BACKLOG_ALERT_MAX_AGE_HOURS,
                    },
                }
            )
        elif alerts:
            for alert in alerts:
                self.stdout.write(f"ALERT: {alert}")
        else:
            self.stdout.write("OK: no backlog alert.")
        if alerts:
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
        overview.add_row(
            "canonical / duplicates", f"{summary['canonical']} / {summary['duplicates']}"
        )
        overview.add_row("open incidents", str(summary["open_incidents"]))
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
                    _short(group["canonical"]),
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
            ("automation", _automation(report)),
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
        self.console.print(_report_table(rows, total=total, width=self.console.width))

    def _json(self, data) -> None:
        self.stdout.write(json.dumps(data, indent=2, cls=DjangoJSONEncoder))


def _console(stdout) -> Console:
    """Colour and box drawing on a terminal; plain text anywhere else (pipes, files, tests).
    The width is COLUMNS when set, else the terminal's, else PIPE_WIDTH."""
    stream = getattr(stdout, "_out", stdout)
    tty = hasattr(stream, "isatty") and stream.isatty()
    columns = os.environ.get("COLUMNS", "").strip()
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    return Console(
        file=stream,
        highlight=False,
        force_terminal=tty,
        no_color=not tty,
        color_system="auto" if tty else None,
        width=width or (None if tty else PIPE_WIDTH),
        emoji=False,
    )


def _report_table(reports: list[BugReport], *, total: int, width: int) -> Table:
    """id (short), severity, status, SLA and title always; assignee, age and duplicate-of (when
    any row has one) while the title keeps TITLE_MIN characters. The title takes the rest."""
    now = timezone.now()
    cells: dict[str, list] = {
        "id": [_short(r.pk) for r in reports],
        "severity": [Text(r.severity, style=SEVERITY_STYLE[r.severity]) for r in reports],
        "status": [r.status for r in reports],
        "SLA": [_sla(r, now) for r in reports],
        "assignee": [r.assignee_id or "" for r in reports],
        "age": [_age((now - r.created_at).total_seconds()) for r in reports],
        "duplicate of": [_short(r.duplicate_of_id) if r.duplicate_of_id else "" for r in reports],
    }
    widths = {
        name: max([len(name), *(len(str(cell)) for cell in column)])
        for name, column in cells.items()
    }
    widths["assignee"] = min(widths["assignee"], ASSIGNEE_MAX)
    shown = ["id", "severity", "status", "SLA"]
    # Each column costs its width, 2 of padding and 1 of separator; the title needs as much.
    used = sum(widths[name] + 3 for name in shown) + 3
    for optional in ("assignee", "age", "duplicate of"):
        if any(cells[optional]) and width - used - widths[optional] - 3 >= TITLE_MIN:
            shown.append(optional)
            used += widths[optional] + 3
    table = Table(
        title=f"{len(reports)} of {total} reports",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        expand=True,
    )
    for name in shown[:4]:
        table.add_column(name, no_wrap=True, min_width=widths[name])
    table.add_column("title", no_wrap=True, overflow="ellipsis", ratio=1)
    for name in shown[4:]:
        table.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            min_width=widths[name],
            max_width=widths[name],
            justify="right" if name == "age" else "left",
        )
    for index, report in enumerate(reports):
        row = [cells[name][index] for name in shown[:4]]
        row.append(Text(report.title))
        row.extend(Text(cells[name][index]) for name in shown[4:])
        table.add_row(*row)
    return table


def _short(pk) -> str:
    return str(pk)[:SHORT_ID]


def _sla(report: BugReport, now: datetime) -> Text:
    if not report.is_open or report.sla_due_at is None:
        return Text("")
    left = (report.sla_due_at - now).total_seconds()
    if left <= 0:
        return Text("breached", style="red")
    return Text(f"in {_age(left)}")


def _automation(report: BugReport) -> str:
    text = f"{'on' if report.automation_enabled else 'off'}, {report.attempts} attempts"
    legacy_attempts = ((report.metadata or {}).get("legacy") or {}).get("attempts")
    if legacy_attempts:
        text += f" (+{legacy_attempts} in the old system, not counted)"
    return text


def _find(ident: str) -> BugReport:
    """A report by its id, its legacy id, or a unique prefix of its id (as git finds commits)."""
    queryset = report_list()
    try:
        report = queryset.filter(pk=uuid.UUID(ident)).first()
    except ValueError:
        report = None
    report = report or queryset.filter(legacy_id=ident).first()
    if report is not None:
        return report
    prefix = ident.strip().lower().replace("-", "")
    if not _HEX_PREFIX.fullmatch(prefix):
        raise CommandError(
            f"No bug report {ident!r} (give its id, a prefix of it of at least {MIN_PREFIX} "
            "characters, or its legacy id)."
        )
    # A range over the primary key, not a text match: the index answers it on every database.
    low = uuid.UUID(prefix.ljust(32, "0"))
    high = uuid.UUID(prefix.ljust(32, "f"))
    found = list(queryset.filter(pk__range=(low, high)).order_by("pk")[:6])
    if not found:
        raise CommandError(f"No bug report whose id starts with {ident!r}.")
    if len(found) > 1:
        listed = ", ".join(_short(r.pk) if len(prefix) < SHORT_ID else str(r.pk) for r in found[:5])
        more = " and more" if len(found) > 5 else ""
        raise CommandError(
            f"The prefix {ident!r} is ambiguous: it matches {listed}{more}. Give more characters."
        )
    return found[0]


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
