"""Driving `bugtracker-mcp` with the real SDK client, and checking every output it gives."""

import hashlib
import json
import re
from contextlib import asynccontextmanager

import httpx2
from django.db import connections
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from reports.models import BugReport
from tests.hardening.live import BIN

from .conftest import client_env

DEFAULT_BUDGET = 12_000
TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{43,}")  # a claim token: secrets.token_urlsafe(32)


def report_now(report_id) -> BugReport:
    """The report as the database has it, read from inside the event loop. Django gives the
    loop's context a connection of its own: closed here, so none is left open on the test
    database (which could then not be dropped)."""
    try:
        return BugReport.objects.get(pk=report_id)
    finally:
        connections.close_all()


class ToolFailed(Exception):
    pass


class Recorder:
    """A ClientSession whose every tool output is kept, checked against the budget, and
    parsed; claimed reports' token hashes are noted for `assert_no_token`."""

    def __init__(self, session: ClientSession, budget: int, outputs: list[str], hashes: set):
        self.session = session
        self.budget = budget
        self.outputs = outputs
        self.hashes = hashes

    async def call(self, name: str, **arguments):
        result = await self.session.call_tool(name, arguments)
        assert len(result.content) == 1, result
        text = result.content[0].text
        self.outputs.append(text)
        assert len(text) <= self.budget, (name, len(text))
        if result.is_error:
            raise ToolFailed(text)
        answer = json.loads(text)
        if name == "claim_next" and answer.get("claimed"):
            live = report_now(answer["report_id"]).claim_token_hash
            self.hashes.add(live)
        return answer


def assert_no_token(outputs: list[str], hashes: set) -> None:
    """No output holds any claim token the session was given: every 43-character window
    of every token-shaped run is hashed and compared with the claims' stored hashes."""
    assert hashes, "no claim was made, so nothing was checked"
    for text in outputs:
        assert "claim_token" not in text
        for run in TOKEN_RUN.findall(text):
            for start in range(len(run) - 42):
                window = run[start : start + 43]
                assert hashlib.sha256(window.encode()).hexdigest() not in hashes, text


@asynccontextmanager
async def stdio_session(server, key, *args, outputs=None, hashes=None, **env):
    params = StdioServerParameters(
        command=str(BIN / "bugtracker-mcp"), args=list(args), env=client_env(server, key, **env)
    )
    budget = int(env.get("BUGTRACKER_MCP_MAX_CHARS", DEFAULT_BUDGET))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield Recorder(
            session,
            budget,
            outputs if outputs is not None else [],
            hashes if hashes is not None else set(),
        )


@asynccontextmanager
async def http_session(url, key, *, outputs=None, hashes=None, budget=DEFAULT_BUDGET):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield Recorder(
            session,
            budget,
            outputs if outputs is not None else [],
            hashes if hashes is not None else set(),
        )
