import json
import re

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "Request body is larger than 1 MiB."
    default_code = "payload_too_large"


# A \uD800-\uDFFF escape: JSON allows it alone, but no database can store a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _has_lone_surrogate(data) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    """JSON bodies only: at most 1 MiB, valid UTF-8, no NUL characters or lone surrogates (no
    database stores them), an object at the top.

    DRF reads the WSGI stream directly, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE,
    so the size limit is enforced here while reading.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ParseError("Request body is not valid UTF-8.") from None
        if "\x00" in text or "\\u0000" in text:
            raise ParseError("Request body contains a NUL character, which cannot be stored.")
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"Request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ParseError("Request body must be a JSON object.")
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
            raise ParseError(
                "Request body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff)."
            )
        return data
