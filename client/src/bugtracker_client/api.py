"""The bugtracker HTTP API, typed: one place for auth, retries and problem details.

`BUGTRACKER_URL` is the server's root (e.g. http://127.0.0.1:8000) and `BUGTRACKER_API_KEY`
the key from `manage.py create_api_key`. Errors come back as `ApiError` carrying the RFC 9457
problem the server sent.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx

from . import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = (429, 503)  # the server did nothing and says when to come back
MAX_RETRY_WAIT = 60.0
FULL_ID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)

# What a write's answer shows of the report it changed: enough to see what the write did,
# without the report's long texts (the server's `view=compact` shapes lists and claims).
OUTCOME_FIELDS = (
    "id",
    "title",
    "status",
    "severity",
    "component",
    "category",
    "claim",
    "assignee_id",
    "needs_human",
    "next_attempt_at",
    "duplicate_of",
    "pr_url",
    "verified_by",
)

RELEASE_REASONS = (
    "cannot_reproduce",
    "needs_info",
    "env_error",
    "too_big",
    "not_a_bug",
    "budget_exhausted",
    "other",
)
SEVERITIES = ("critical", "high", "medium", "low")


class ApiError(Exception):
    """A problem the server answered (or the transport's failure, with status 0)."""

    def __init__(self, status: int, problem: Mapping[str, Any] | None = None, *, message: str = ""):
        self.status = status
        self.problem = dict(problem or {})
        self.message = message
        super().__init__(str(self))

    @property
    def type(self) -> str:
        return str(self.problem.get("type", ""))

    @property
    def errors(self) -> dict:
        errors = self.problem.get("errors")
        return errors if isinstance(errors, dict) else {}

    def __str__(self) -> str:
        if self.message:
            return self.message
        title = self.problem.get("title") or httpx.codes.get_reason_phrase(self.status)
        text = f"{self.status} {title}"
        detail = self.problem.get("detail")
        if detail and detail != title:
            text += f": {detail}"
        for name, messages in self.errors.items():
            shown = "; ".join(map(str, messages)) if isinstance(messages, list) else messages
            text += f"\n  {name}: {shown}"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"title": response.reason_phrase, "detail": response.text[:500]}
        return cls(response.status_code, body)


@dataclass
class Page:
    """One page of a list; `cursor` resumes after it (None on the last page)."""

    results: list[dict]
    cursor: str | None


@dataclass
class Claim:
    """A claim as the server granted it. The token proves the claim: keep it out of sight."""

    report: dict
    token: str = field(repr=False)
    expires_at: str | None
    epoch: int | None = None
    context: dict | None = None

    @property
    def report_id(self) -> str:
        return str(self.report["id"])


def changed(report: Mapping[str, Any]) -> dict:
    """A changed report as a write's answer shows it (`OUTCOME_FIELDS`)."""
    return {name: report[name] for name in OUTCOME_FIELDS if name in report}


def cursor_of(next_url: str | None) -> str | None:
    if not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    return values[0] if values else None


def _without_none(values: Mapping[str, Any]) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def _comma(value: str | Iterable[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


class BugtrackerClient:
    """Sync client for the API; thread-safe (one connection pool), reuse it."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = (base_url or os.environ.get("BUGTRACKER_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("BUGTRACKER_API_KEY")
        self.retries = retries
        headers = {"User-Agent": f"bugtracker-client/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BugtrackerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the one request path --------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send, retrying 429/503 after their Retry-After (the server did nothing) and, for
        GET, a connection that failed; any other 4xx/5xx raises `ApiError`."""
        extra = {"timeout": timeout} if timeout is not None else {}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(
                    method,
                    path,
                    params=_without_none(params or {}),
                    json=json,
                    headers=headers,
                    **extra,
                )
            except httpx.TransportError as error:
                if method != "GET" or last:
                    raise ApiError(0, message=f"cannot reach {self.base_url}: {error}") from error
                time.sleep(min(2**attempt, MAX_RETRY_WAIT))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(retry_after(response, default=2**attempt))
                continue
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            return response
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kwargs) -> Any:
        return self.request(method, path, **kwargs).json()

    @staticmethod
    def _token(token: str | None) -> dict[str, str]:
        return {"X-Claim-Token": token} if token else {}

    # -- reading ---------------------------------------------------------------------------

    def whoami(self) -> dict:
        return self._json("GET", "/api/whoami")

    def list_reports(
        self,
        *,
        cursor: str | None = None,
        page_size: int | None = None,
        view: str | None = None,
        **filters: Any,
    ) -> Page:
        """`filters` are the list's query parameters (status, severity, component, …);
        lists may be given for the comma-list ones."""
        params = {name: _comma(value) for name, value in filters.items()}
        params.update(cursor=cursor, page_size=page_size, view=view)
        body = self._json("GET", "/api/bug-reports", params=params)
        return Page(results=body["results"], cursor=cursor_of(body.get("next")))

    def get_report(self, report_id: str, *, fields: Iterable[str] | None = None) -> dict:
        """One report; `fields` narrows it to those top-level fields (`id` always)."""
        return self._json(
            "GET", f"/api/bug-reports/{report_id}", params={"fields": _comma(fields) or None}
        )

    def get_context(
        self, report_id: str, *, max_chars: int | None = None, markdown: bool = False
    ) -> dict | str:
        params = {"max_chars": max_chars, "format": "markdown" if markdown else None}
        response = self.request("GET", f"/api/bug-reports/{report_id}/context", params=params)
        return response.text if markdown else response.json()

    def events(
        self, report_id: str, *, cursor: str | None = None, page_size: int | None = None
    ) -> Page:
        """One page of a report's history, oldest first."""
        body = self._json(
            "GET",
            f"/api/bug-reports/{report_id}/events",
            params={"cursor": cursor, "page_size": page_size},
        )
        return Page(results=body["results"], cursor=cursor_of(body.get("next")))

    def summary(self) -> dict:
        return self._json("GET", "/api/bug-reports/summary")

    def resolve_id(self, prefix: str, *, known: Iterable[str] = (), max_pages: int = 20) -> str:
        """The report whose id starts with `prefix` (dashes optional). `known` ids are tried
        first (e.g. the caller's claims); then every report is scanned, newest first.
        Raises `AmbiguousId` or `ApiError` 404."""
        wanted = prefix.lower().replace("-", "")
        if FULL_ID.match(prefix):
            return prefix
        if not wanted or not re.fullmatch(r"[0-9a-f]+", wanted):
            raise ApiError(404, {"title": "Not Found", "detail": f"{prefix!r} is not a report id."})

        def matching(ids: Iterable[str]) -> set[str]:
            return {i for i in ids if i.replace("-", "").startswith(wanted)}

        found = matching(known)
        if len(found) == 1:
            return found.pop()
        cursor = None
        for _ in range(max_pages):
            page = self.list_reports(
                cursor=cursor,
                page_size=200,
                include_duplicates="true",
                ordering="-created_at",
                status="open,done",
                fields="id",
            )
            found |= matching(str(report["id"]) for report in page.results)
            if len(found) > 1:
                raise AmbiguousId(prefix, sorted(found))
            cursor = page.cursor
            if cursor is None:
                break
        if len(found) == 1:
            return found.pop()
        raise ApiError(
            404, {"title": "Not Found", "detail": f"No report id starts with {prefix!r}."}
        )

    # -- claims ----------------------------------------------------------------------------

    def claim(self, report_id: str, *, lease_seconds: int | None = None) -> Claim:
        body = self._json(
            "POST",
            f"/api/bug-reports/{report_id}/claim",
            json=_without_none({"lease_seconds": lease_seconds}),
        )
        return _claim(body)

    def claim_next(
        self,
        *,
        severity: str | Iterable[str] | None = None,
        min_severity: str | None = None,
        component: str | Iterable[str] | None = None,
        category: str | Iterable[str] | None = None,
        purpose: str | None = None,
        wait: int | None = None,
        lease_seconds: int | None = None,
        view: str | None = None,
        context: bool | None = None,
        max_chars: int | None = None,
    ) -> Claim | None:
        """Claims the highest-priority matching report, or None when nothing is available
        (after waiting up to `wait` seconds). Only the options given are sent."""
        body = _without_none(
            {
                "severity": _comma(severity),
                "min_severity": min_severity,
                "component": _comma(component),
                "category": _comma(category),
                "purpose": purpose,
                "wait": wait or None,
                "lease_seconds": lease_seconds,
                "view": view,
                "context": context or None,
                "max_chars": max_chars,
            }
        )
        timeout = 30.0 + (wait or 0)  # a long poll holds the request open
        response = self.request("POST", "/api/bug-reports/claim-next", json=body, timeout=timeout)
        if response.status_code == 204:
            return None
        return _claim(response.json())

    def heartbeat(self, report_id: str, token: str, *, lease_seconds: int | None = None) -> dict:
        return self._json(
            "POST",
            f"/api/bug-reports/{report_id}/heartbeat",
            json=_without_none({"lease_seconds": lease_seconds}),
            headers=self._token(token),
        )

    def release(
        self,
        report_id: str,
        *,
        token: str | None = None,
        reason: str | None = None,
        note: str | None = None,
    ) -> dict:
        return self._json(
            "POST",
            f"/api/bug-reports/{report_id}/release",
            json=_without_none({"reason": reason, "note": note}),
            headers=self._token(token),
        )

    def resolve(
        self,
        report_id: str,
        *,
        token: str | None = None,
        resolution_notes: str | None = None,
        commit_shas: list[str] | None = None,
        pr_url: str | None = None,
        tests: list[str] | None = None,
        verify: bool | None = None,
    ) -> dict:
        return self._json(
            "POST",
            f"/api/bug-reports/{report_id}/resolve",
            json=_without_none(
                {
                    "resolution_notes": resolution_notes,
                    "commit_shas": commit_shas or None,
                    "pr_url": pr_url,
                    "tests": tests or None,
                    "verify": verify,
                }
            ),
            headers=self._token(token),
        )

    def verify(
        self, report_id: str, *, outcome: str, note: str | None = None, token: str | None = None
    ) -> dict:
        """A verifier that claimed the report (claim-next `purpose: verify`) sends its token."""
        return self._json(
            "POST",
            f"/api/bug-reports/{report_id}/verify",
            json=_without_none({"outcome": outcome, "note": note}),
            headers=self._token(token),
        )

    # -- writing ---------------------------------------------------------------------------

    def add_event(
        self,
        report_id: str,
        *,
        message: str,
        kind: str = "note",
        data: dict | None = None,
        token: str | None = None,
    ) -> dict:
        return self._json(
            "POST",
            f"/api/bug-reports/{report_id}/events",
            json=_without_none({"kind": kind, "message": message, "data": data}),
            headers=self._token(token),
        )

    def submit(self, *, idempotency_key: str | None = None, **fields: Any) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/api/bug-reports", json=_without_none(fields), headers=headers)


class AmbiguousId(ApiError):
    def __init__(self, prefix: str, candidates: list[str]):
        shown = ", ".join(candidates[:5]) + (" …" if len(candidates) > 5 else "")
        super().__init__(
            400, message=f"{prefix!r} matches several reports ({shown}): give more of the id."
        )
        self.candidates = candidates


def write_as_holder(
    api: BugtrackerClient,
    report_id: str,
    token: str | None,
    write: Callable[[str | None], Any],
) -> tuple[Any, Claim | None]:
    """`write(token)`, and the claim made on the way, if any. Without a token, a write refused
    for want of one (428) re-claims the report, which the server grants its holder with a
    fresh token (a client that restarted and lost it), and tries once more; a re-claim the
    server refuses leaves the first refusal standing."""
    try:
        return write(token), None
    except ApiError as refused:
        if token is not None or refused.status != 428:
            raise
        try:
            claim = api.claim(report_id)
        except ApiError:
            raise refused from None
    return write(claim.token), claim


def retry_after(response: httpx.Response, *, default: float) -> float:
    """Seconds to wait before retrying: the server's Retry-After (seconds), capped."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        seconds = default
    return max(0.0, min(seconds, MAX_RETRY_WAIT))


def _claim(body: Mapping[str, Any]) -> Claim:
    return Claim(
        report=body["report"],
        token=body["claim_token"],
        expires_at=body.get("claim_expires_at"),
        epoch=body.get("claim_epoch"),
        context=body.get("context"),
    )
