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


def post(*, target: Target, body: str, headers: dict, timeout: float) -> Answer:
    """POST `body`; never follows redirects (a 3xx is a failure, as a redirect could point
    anywhere the guard did not check)."""
    started = time.monotonic()
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = kind(target, timeout)
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
        status, text, error = response.status, data.decode("utf-8", "replace"), ""
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        status, text, error = None, "", f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return Answer(status, text, error, int((time.monotonic() - started) * 1000))
