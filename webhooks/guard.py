"""The SSRF guard: a webhook may not point into the tracker's own network.

A URL is checked when it is registered and again before every try, on the addresses its host
resolves to then (DNS can change after registration), and the try connects to the address
that was checked, never resolving again (no rebinding between the check and the connect).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query string
    address: str  # the checked address to connect to


def refusal(address: Address) -> str | None:
    """Why deliveries to `address` are refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "a reserved address"
    return None


def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {host!r} does not resolve: {exc}.") from None
    addresses = []
    for info in infos:
        # A scoped IPv6 address (fe80::1%eth0) names its interface after the %.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_url(url: str, *, allow_private: bool | None = None) -> Target:
    """Where a delivery to `url` may connect, or UnsafeUrl. Every address the host resolves
    to must be allowed: one public answer among private ones does not make it safe."""
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("Only http and https URLs can receive webhooks.")
    if parts.username or parts.password:
        raise UnsafeUrl("A webhook URL may not carry credentials; use the signing secret.")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("The URL names no host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("The URL's port is not a number from 1 to 65535.") from None
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeUrl(f"The host {host!r} does not resolve.")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise UnsafeUrl(
                    f"{host} resolves to {address}, {reason}; webhooks may only reach public "
                    "addresses (WEBHOOK_ALLOW_PRIVATE allows others)."
                )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, str(addresses[0]))
