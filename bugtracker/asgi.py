import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bugtracker.settings")
application = get_asgi_application()

from bugtracker.startup import require_secret_key  # noqa: E402  (needs settings loaded)

require_secret_key()
