import json

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "Request body is larger than 1 MiB."
    default_code = "payload_too_large"


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    """JSON bodies only: at most 1 MiB, valid UTF-8, no NUL characters, an object at the top.

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
        return data
