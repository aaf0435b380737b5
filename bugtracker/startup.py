from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def require_secret_key() -> None:
    """A server never starts without a SECRET_KEY (DEBUG supplies a development one)."""
    try:
        settings.SECRET_KEY  # Django refuses an empty key on access  # noqa: B018
    except ImproperlyConfigured:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.") from None
