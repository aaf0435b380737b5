"""HTTP conventions shared by every view: ETag / If-Match on the row version, the claim
token header, URL length."""

from .domain import InvalidInput
from .errors import problem_response

# Longer URLs (path and query string) are refused with a 414 problem before any view runs.
# gunicorn's own limit on the request line sits above it (gunicorn.conf.py), so the answer
# is this documented problem, not the server's HTML page.
MAX_URL_LENGTH = 4096


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


def claim_token(request) -> str | None:
    """The token of the claim the caller holds (X-Claim-Token), None when not sent."""
    return request.headers.get("X-Claim-Token")


class UrlLengthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = len(request.path) + len(request.META.get("QUERY_STRING", ""))
        if length > MAX_URL_LENGTH:
            return problem_response(
                414, f"The URL is {length} characters long; at most {MAX_URL_LENGTH} are read."
            )
        return self.get_response(request)
