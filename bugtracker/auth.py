import hmac

from django.db import connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .models import ApiKey
from .rows import columns, from_row, select_list
from .services import hash_api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`; the key is looked up by its SHA-256, never stored raw.

    Why this is safe against timing attacks: the index compares SHA-256 digests, and the
    caller controls the key, not its digest. Learning how many leading digest bytes of a
    guess matched tells nothing about the real key (finding a key with a chosen digest
    prefix is a preimage search), so the lookup leaks nothing useful. The digest found is
    compared once more in constant time, so no code path compares key material otherwise.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <key>'.")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        digest = hash_api_key(raw)
        key = _live_key(digest)
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return key, key

    def authenticate_header(self, request):
        return self.keyword


_KEY_COLUMNS = columns(ApiKey)


def _live_key(digest: str) -> ApiKey | None:
    """The unrevoked key with this digest. Every request runs this: plain SQL on the unique
    index, as the ORM's get() spent more time compiling the query than running it."""
    sql = (
        f"SELECT {select_list(ApiKey, _KEY_COLUMNS, 'k')} FROM {ApiKey._meta.db_table} k "
        "WHERE k.key_hash = %s AND k.revoked_at IS NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    return None if row is None else from_row(ApiKey, _KEY_COLUMNS, row)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "bugtracker.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py create_api_key NAME --role ROLE`.",
        }
