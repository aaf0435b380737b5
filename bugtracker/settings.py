"""Settings come from the environment (12-factor); every variable is listed in the README."""

import json
import os
import sys
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
# Without a key, serving refuses to start (bugtracker/wsgi.py, asgi.py); commands that need
# no key (migrate, makemigrations --check, backfill_json) still run.

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
RELEASE_SHA = env.str("RELEASE_SHA", default="")

# HTTPS and security headers: `manage.py check --deploy` passes in production (DEBUG off,
# SECURE_SSL_REDIRECT on). Behind a TLS-terminating proxy, SECURE_PROXY_SSL_HEADER names the
# header it sets, e.g. `HTTP_X_FORWARDED_PROTO,https`; HSTS is only sent over HTTPS.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^api/(health|ready)/?$"]  # orchestrator probes over plain HTTP
if env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER"))
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
# The API authenticates with bearer keys, never cookies, so CSRF protection has nothing to do.
SILENCED_SYSTEM_CHECKS = ["security.W003"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    # Before staticfiles: its runserver (staticfiles' own, which says that it serves) wins.
    "remediation",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets shipped with the app: /api/docs needs no CDN
    "bugtracker",
    "reports",
    "telemetry",
    "dedup",
    "webhooks",
    "legacy",
    "ingest",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise too, so every response (static assets included) echoes X-Request-ID
    # and is logged; it does no I/O, so serving static files stays cheap.
    "telemetry.middleware.RequestContextMiddleware",
    # Before anything that may touch the database: every wait on it is bounded.
    "bugtracker.deadline.DatabaseDeadlineMiddleware",
    "bugtracker.http.UrlLengthMiddleware",
    # Unknown query parameters are a 400 naming them (what the schema documents is accepted).
    "bugtracker.querystrings.StrictQueryMiddleware",
    # Static files (the docs page's assets) straight from gunicorn, no separate web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Under DEBUG, exceptions are answered as problems too, not with the HTML debug page.
    "bugtracker.errors.ProblemsInDebugMiddleware",
]
# Request counts and latencies (GET /metrics); outermost, so every response is counted and
# timed, whatever answered it. METRICS_ENABLED=0 leaves them out (the benchmarks' baseline).
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
if METRICS_ENABLED:
    MIDDLEWARE.insert(0, "bugtracker.metrics.RequestMetricsMiddleware")

ROOT_URLCONF = "bugtracker.urls"
WSGI_APPLICATION = "bugtracker.wsgi.application"
ASGI_APPLICATION = "bugtracker.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# Which process this is picks its server-side limits (seconds, 0 for none): a request must
# fail fast; the worker's statements are short but it must not give up on a busy table; a
# command (migrate, backfill_json, dedup_regroup) may legitimately run long.
_COMMAND = sys.argv[1] if Path(sys.argv[0]).name == "manage.py" and len(sys.argv) > 1 else ""
if _COMMAND == "run_worker":
    _DB_TIMEOUTS = (
        env.float("WORKER_STATEMENT_TIMEOUT", default=60.0),
        env.float("WORKER_LOCK_TIMEOUT", default=10.0),
    )
elif _COMMAND and _COMMAND != "runserver":
    _DB_TIMEOUTS = (
        env.float("COMMAND_STATEMENT_TIMEOUT", default=0.0),
        env.float("COMMAND_LOCK_TIMEOUT", default=60.0),
    )
else:
    _DB_TIMEOUTS = (
        env.float("DB_STATEMENT_TIMEOUT", default=30.0),
        env.float("DB_LOCK_TIMEOUT", default=5.0),
    )
# A web request still waiting on PostgreSQL after this long has a connection that went
# silent without the TCP stack noticing (a middlebox that still acknowledges): the
# connection is cut and the request answers 503 (bugtracker/deadline.py). 0: never.
DB_REQUEST_DEADLINE = env.float(
    "DB_REQUEST_DEADLINE", default=_DB_TIMEOUTS[0] + 5 if _DB_TIMEOUTS[0] else 0
)


def _server_timeouts(statement: float, lock: float) -> dict:
    """libpq `options` setting the server's timeouts at connect: no round trip of their own.
    A session idle inside a transaction for as long as a statement may run lost its client
    (a killed process, a cut network): the server ends it, releasing its locks (an
    idempotency key's row among them) instead of holding them until TCP notices."""
    timeouts = (
        ("statement_timeout", statement),
        ("lock_timeout", lock),
        ("idle_in_transaction_session_timeout", statement),
    )
    parts = [f"-c {name}={int(seconds * 1000)}" for name, seconds in timeouts if seconds]
    return {"options": " ".join(parts)} if parts else {}


DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let readers and one writer share the file without "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("SQLITE_TIMEOUT", default=20),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a file (not shared-cache memory) so threads see real WAL locking, as in production.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Parameters bound by the server, and statements run more than DB_PREPARE_THRESHOLD
    # times on a connection kept prepared (parsed and planned once): the hot paths run the
    # same few statements all day. Behind a transaction-pooling PgBouncer older than 1.21,
    # set DB_PREPARE_THRESHOLD=off.
    threshold = env.str("DB_PREPARE_THRESHOLD", default="5")
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "server_side_binding": True,
            "prepare_threshold": None
            if threshold.lower() in ("off", "none", "")
            else int(threshold),
            # Every wait bounded: a connect, a peer that vanished (keepalives), data the
            # network stopped acknowledging (tcp_user_timeout), and on the server a
            # statement or a lock wait that runs too long.
            "connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=5),
            "keepalives": 1,
            "keepalives_idle": env.int("DB_KEEPALIVES_IDLE", default=10),
            "keepalives_interval": env.int("DB_KEEPALIVES_INTERVAL", default=3),
            "keepalives_count": 3,
            "tcp_user_timeout": int(env.float("DB_TCP_USER_TIMEOUT", default=20.0) * 1000),
            **_server_timeouts(*_DB_TIMEOUTS),
        }
    )
    # A connection pool per process (psycopg_pool): a request borrows a connection and gives it
    # back when it ends, so threads that wait (long-polls) or idle hold none and nobody
    # reconnects. DB_POOL_MAX connections per process at most; 0 keeps one persistent
    # connection per thread (CONN_MAX_AGE) instead.
    pool_max = env.int("DB_POOL_MAX", default=0)
    if pool_max:
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        # No health check on borrowing: Django runs it inside the pool's getconn(), before the
        # request's connection wrapper holds the connection, so a database that stopped
        # answering would hang it out of reach of the request deadline's watchdog. A dead
        # pooled connection instead fails its first query (503) and the pool drops it.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": min(2, pool_max),
            "max_size": pool_max,
            # Waiting for a connection is a database wait too: never past the request deadline.
            "timeout": env.float("DB_POOL_TIMEOUT", default=min(10.0, DB_REQUEST_DEADLINE or 10.0)),
        }

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://bugtracker")}

# How many proxies of ours stand in front of the app, each appending to X-Forwarded-For:
# the client's address is taken that many entries from the right (bugtracker/clients.py).
# 0: the header is ignored and the address is the connection's peer (REMOTE_ADDR).
TRUSTED_PROXIES = env.int("TRUSTED_PROXIES", default=0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Until `collectstatic` has filled STATIC_ROOT (make serve does), WhiteNoise finds assets in the apps.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=not STATIC_ROOT.is_dir())
if WHITENOISE_USE_FINDERS:  # then a missing STATIC_ROOT is expected, not worth a warning
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["bugtracker.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["bugtracker.permissions.IsAgent"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["bugtracker.parsers.StrictJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "bugtracker.schema.RoleAwareAutoSchema",
    "EXCEPTION_HANDLER": "bugtracker.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # `?format=` is not a renderer switch: only what an operation documents is accepted.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_THROTTLE_CLASSES": ["bugtracker.throttling.RoleRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anonymous": env.str("THROTTLE_ANONYMOUS", default="60/min"),
        "reporter": env.str("THROTTLE_REPORTER", default="600/min"),
        "agent": env.str("THROTTLE_AGENT", default="6000/min"),
        "admin": env.str("THROTTLE_ADMIN", default="12000/min"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "bugtracker API",
    "DESCRIPTION": (
        "An agent-first bug tracker. Agents list, claim (with an expiring lease), update, "
        "annotate and resolve bug reports. Every error is application/problem+json (RFC 9457).\n\n"
        "**How an agent works**: claim-next → context → heartbeat → note → resolve with "
        "evidence or release with a reason → verify. The guide, with curl examples: "
        "[the agent work loop](/api/docs/agents)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "bugtracker.schema.problem_details_hook",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SeverityEnum": "reports.models.Severity",
        "StatusEnum": "reports.models.Status",
        "SourceEnum": "reports.models.Source",
        "EventKindEnum": "reports.models.EventKind",
        "WebhookEventTypeEnum": "webhooks.models.EventType",
        "WebhookDeliveryStatusEnum": "webhooks.models.DeliveryStatus",
        "AttemptOutcomeEnum": "reports.models.AttemptOutcome",
        "RunOutcomeEnum": "remediation.models.RunOutcome",
        "ReleaseReasonEnum": "reports.models.ReleaseReason",
        "AttemptPurposeEnum": "reports.models.AttemptPurpose",
        "VerificationEnum": "reports.models.Verification",
    },
}

# Domain settings.
SLA_HOURS = {
    "critical": env.int("SLA_HOURS_CRITICAL", default=4),
    "high": env.int("SLA_HOURS_HIGH", default=24),
    "medium": env.int("SLA_HOURS_MEDIUM", default=72),
    "low": env.int("SLA_HOURS_LOW", default=168),
}
# Long-polls (claim-next and the changes feed `wait`) parked at once per process; beyond that a
# waiting request is a 503 with Retry-After. gunicorn.conf.py adds this many threads.
WAIT_SLOTS = env.int("WAIT_SLOTS", default=64)
# The longest a long-poll waits, whatever `wait` asks (keep it under a proxy's read timeout).
LONG_POLL_MAX_SECONDS = env.int("LONG_POLL_MAX_SECONDS", default=60)
# Threads per process that keep a database connection between requests (the others close
# theirs when their request ends): the ordinary request threads, GUNICORN_THREADS.
DB_PERSISTENT_CONNECTIONS = env.int(
    "DB_PERSISTENT_CONNECTIONS", default=env.int("GUNICORN_THREADS", default=4)
)
BUGTRACKER_ANONYMOUS_SUBMIT = env.bool("BUGTRACKER_ANONYMOUS_SUBMIT", default=True)
DEDUP_WINDOW_DAYS = env.int("DEDUP_WINDOW", default=30)
# Deployment roots stripped from frame paths (compact repo_hints, the context bundle's frames),
# beside the usual ones (/app/, /srv/app/, /usr/src/app/, ...).
REPO_PATH_ROOTS = [
    root.rstrip("/") + "/" for root in env.list("REPO_PATH_ROOTS", default=[]) if root.strip()
]

BUGTRACKER_WORKER = env.bool("BUGTRACKER_WORKER", default=False)


def argv_setting(name: str) -> list[str]:
    """A JSON list of strings from the environment (an argv), or one line naming the variable."""
    raw = env.str(name, default="")
    if not raw.strip():
        return []
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f'{name} must be a JSON list of strings, e.g. ["/usr/local/bin/fixer", "--fast"]; '
            f"it is not JSON ({exc})."
        ) from None
    if not isinstance(value, list) or not all(isinstance(part, str) and part for part in value):
        raise ImproperlyConfigured(
            f'{name} must be a JSON list of non-empty strings, e.g. ["/usr/local/bin/fixer"]; '
            f"got {raw.strip()[:80]}."
        )
    return value


REMEDIATION_COMMAND = argv_setting("REMEDIATION_COMMAND")
REMEDIATION_TIMEOUT = env.float("REMEDIATION_TIMEOUT", default=600.0)
WORKER_POLL_SECONDS = env.float("WORKER_POLL_SECONDS", default=5.0)
WORKER_THREADS = env.int("WORKER_THREADS", default=2)
RETRY_COOLDOWN = env.float("RETRY_COOLDOWN", default=300.0)
MAX_ATTEMPTS = env.int("MAX_ATTEMPTS", default=3)
# claim-next never hands a holder a report it released in the last RECLAIM_COOLDOWN seconds.
RECLAIM_COOLDOWN = env.float("RECLAIM_COOLDOWN", default=3600.0)
WORKER_LEASE_SECONDS = env.int("WORKER_LEASE_SECONDS", default=120)
WORKER_SWEEP_SECONDS = env.float("WORKER_SWEEP_SECONDS", default=60.0)
WORKER_ENRICH_SECONDS = env.float("WORKER_ENRICH_SECONDS", default=300.0)
WORKER_ENRICH_BATCH = env.int("WORKER_ENRICH_BATCH", default=500)
WORKER_ALERT_SECONDS = env.float("WORKER_ALERT_SECONDS", default=300.0)
WORKER_SHUTDOWN_SECONDS = env.float("WORKER_SHUTDOWN_SECONDS", default=10.0)
BACKLOG_ALERT_MAX_OPEN = env.int("BACKLOG_ALERT_MAX_OPEN", default=500)
BACKLOG_ALERT_MAX_AGE_HOURS = env.float("BACKLOG_ALERT_MAX_AGE_HOURS", default=168.0)
LEGACY_MIRROR_DIR = env.str("LEGACY_MIRROR_DIR", default="")
# Reports imported `in_progress` come in claimed by `legacy` for this long (0: not claimed).
LEGACY_CLAIM_HOURS = env.float("LEGACY_CLAIM_HOURS", default=24.0)

# Webhooks (Standard Webhooks): delivered by a dispatcher in each serving process.
WEBHOOK_WORKER = env.bool("WEBHOOK_WORKER", default=True)
WEBHOOK_ALLOW_PRIVATE = env.bool("WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_SECONDS = env.float("WEBHOOK_RETRY_SECONDS", default=10.0)
WEBHOOK_DISABLE_AFTER_HOURS = env.float("WEBHOOK_DISABLE_AFTER_HOURS", default=72.0)
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)
WEBHOOK_LEASE_SECONDS = env.float("WEBHOOK_LEASE_SECONDS", default=60.0)
WEBHOOK_THREADS = env.int("WEBHOOK_THREADS", default=2)
WEBHOOK_POLL_SECONDS = env.float("WEBHOOK_POLL_SECONDS", default=2.0)
WEBHOOK_ALERT_SECONDS = env.float("WEBHOOK_ALERT_SECONDS", default=60.0)

# GET /metrics asks for `Authorization: Bearer <METRICS_TOKEN>` when it is set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Sentry-protocol ingest (ingest/): the rate per DSN, the host DSNs name, body limits.
INGEST_RATE_PER_KEY = env.str("INGEST_RATE_PER_KEY", default="600/min")
INGEST_KEEP_PII = env.bool("INGEST_KEEP_PII", default=False)
INGEST_DSN_HOST = env.str("INGEST_DSN_HOST", default="127.0.0.1:8000")
INGEST_MAX_BODY = env.int("INGEST_MAX_BODY", default=10 * 1024 * 1024)
INGEST_MAX_DECOMPRESSED = env.int("INGEST_MAX_DECOMPRESSED", default=10 * 1024 * 1024)
INGEST_MAX_ITEMS = env.int("INGEST_MAX_ITEMS", default=100)
INGEST_KEY_CACHE_SECONDS = env.float("INGEST_KEY_CACHE_SECONDS", default=5.0)

LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "telemetry.logging.TextFormatter"},
        "json": {"()": "telemetry.logging.JsonFormatter"},
    },
    # Every line carries the request id and trace id of the request it was logged in.
    "filters": {"request_context": {"()": "telemetry.logging.RequestContextFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
