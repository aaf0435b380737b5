"""HTTP conventions shared by every view: ETag / If-Match on the row version."""

from .domain import InvalidInput


def etag_for(version: int) -> str:
    return f'"{version}"'


def if_match_version(request) -> int | None:
    """The version named by If-Match, None when absent or `*`."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    tag = raw.split(",")[0].strip()
    tag = tag.removeprefix("W/").strip('"')
    try:
        return int(tag)
    except ValueError:
        raise InvalidInput("If-Match", 'If-Match must be an ETag like "3".') from None
