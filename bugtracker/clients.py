"""Who is calling, by network address: one answer for the throttle, the idempotency scope of
anonymous callers and the access log."""

import ipaddress

from django.conf import settings


def _address(value: str) -> str | None:
    """`value` as a normalised IP address (IPv4, IPv6, a bracketed or ported form), else None."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [2001:db8::1]:443
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # 203.0.113.7:51000
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_address(request) -> str:
    """The caller's address: `REMOTE_ADDR`, unless `TRUSTED_PROXIES` says how many proxies of
    ours stand in front of the app. Each of them appends the address it received the request
    from to `X-Forwarded-For`, so the client is the entry that many hops from the right; entries
    further left were sent by the client and prove nothing (a new one on each request must not
    make a new client). With fewer entries than trusted hops, the leftmost one is taken."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    hops = settings.TRUSTED_PROXIES
    if hops <= 0:
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    forwarded = [part.strip() for part in header.split(",") if part.strip()]
    if not forwarded:
        return remote
    return _address(forwarded[-min(hops, len(forwarded))]) or remote
