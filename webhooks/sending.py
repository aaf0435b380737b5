"""One signed POST to a checked address (Standard Webhooks headers, signed by the
`standardwebhooks` library), and what came back."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime

from standardwebhooks.webhooks import Webhook as Signer

from .guard import Target

USER_AGENT = "bugtracker-webhooks/1"
RESPONSE_KEEP_BYTES = 2048


@dataclass
class Answer:
    status: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signed_headers(*, secret: str, message_id: str, timestamp: datetime, body: str) -> dict:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Signer(secret).sign(message_id, timestamp, body),
    }


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the address the guard checked; the Host header still names the host."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address, the certificate verified for the host name."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Connections:
    """Open connections by checked target, reused for the tries of one batch (keep-alive),
    closed at its end."""

    def __init__(self):
        self._open: dict[Target, http.client.HTTPConnection] = {}

    def get(self, target: Target, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        connection = self._open.get(target)
        if connection is not None:
            return connection, True
        kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        connection = self._open[target] = kind(target, timeout)
        return connection, False

    def drop(self, target: Target) -> None:
        connection = self._open.pop(target, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for target in list(self._open):
            self.drop(target)


def post(
    *, target: Target, body: str, headers: dict, timeout: float, pool: Connections | None = None
) -> Answer:
    """POST `body`; never follows redirects (a 3xx is a failure, as a redirect could point
    anywhere the guard did not check). With a `pool`, a connection left open by an earlier
    try to the same address is reused; one the endpoint had closed meanwhile is replaced
    and the request sent once more on a new one."""
    started = time.monotonic()
    own = pool is None
    pool = pool or Connections()
    try:
        for _ in range(2):
            connection, reused = pool.get(target, timeout)
            try:
                connection.request(
                    "POST",
                    target.path,
                    body=body.encode(),
                    headers={
                        **headers,
                        "Content-Type": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                )
                response = connection.getresponse()
                data = response.read(RESPONSE_KEEP_BYTES)
                if response.will_close or not response.isclosed():
                    pool.drop(target)  # closing, or a body longer than kept: not reusable
                return Answer(
                    response.status,
                    data.decode("utf-8", "replace"),
                    "",
                    int((time.monotonic() - started) * 1000),
                )
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                pool.drop(target)
                if not reused:
                    return _failed(exc, started)
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                pool.drop(target)
                return _failed(exc, started)
        return _failed(ConnectionError("the connection closed twice"), started)
    finally:
        if own:
            pool.close()


def _failed(exc: BaseException, started: float) -> Answer:
    return Answer(
        None, "", f"{type(exc).__name__}: {exc}", int((time.monotonic() - started) * 1000)
    )
