"""Probes for orchestrators: liveness (`/api/health`, the process answers) and readiness
(`/api/ready`, the database is reachable and migrated and the cache answers)."""

import logging
import uuid

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .errors import PROBLEM_CONTENT_TYPE, problem
from .schema import PROBLEM

logger = logging.getLogger("bugtracker.health")

READY_RETRY_AFTER_SECONDS = 5
OK = "ok"

HEALTH = inline_serializer(name="Health", fields={"status": serializers.CharField()})
CHECKS = inline_serializer(
    name="ReadinessChecks",
    fields={
        "database": serializers.CharField(help_text="`ok` or `unreachable`."),
        "migrations": serializers.CharField(
            help_text="`ok`, `unapplied` (some not applied yet) or `unknown` (no database)."
        ),
        "cache": serializers.CharField(help_text="`ok` or `unreachable`."),
    },
)
READY = inline_serializer(
    name="Ready", fields={"status": serializers.CharField(), "checks": CHECKS}
)


class ProbeView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []


class HealthView(ProbeView):
    @extend_schema(
        summary="Liveness",
        description=(
            "The process answers. Touches no database or cache, so a database blip never "
            "makes an orchestrator restart every instance; readiness is `/api/ready`."
        ),
        auth=[{}],
        responses={200: HEALTH},
    )
    def get(self, request):
        return Response({"status": OK})


# Once every migration was found applied, this process does not look again: migrations are
# applied before a release starts serving and never unapplied under it.
_migrated = False


def _database_check() -> tuple[str, str]:
    """(database, migrations) states."""
    global _migrated
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if _migrated:
            return OK, OK
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        return "unreachable", "unknown"
    if plan:
        return OK, "unapplied"
    _migrated = True
    return OK, OK


def _cache_check() -> str:
    probe = f"bugtracker:ready:{uuid.uuid4().hex}"
    try:
        cache.set(probe, 1, timeout=5)
        answered = cache.get(probe) == 1
        cache.delete(probe)
    except Exception as exc:  # any client error (connection refused, timeout) means not ready
        logger.warning("readiness: cache unreachable: %s", exc)
        return "unreachable"
    return OK if answered else "unreachable"


class ReadyView(ProbeView):
    @extend_schema(
        summary="Readiness",
        description=(
            "Ready to serve: the database is reachable with every migration applied, and the "
            "cache answers. Otherwise 503 problem+json whose `checks` say what is not ready."
        ),
        auth=[{}],
        responses={
            200: READY,
            503: OpenApiResponse(
                PROBLEM,
                description=(
                    "Not ready: `detail` and `checks` name the database, migrations or cache."
                ),
            ),
        },
    )
    def get(self, request):
        database, migrations = _database_check()
        checks = {"database": database, "migrations": migrations, "cache": _cache_check()}
        failing = [f"{name} {state}" for name, state in checks.items() if state != OK]
        if not failing:
            return Response({"status": OK, "checks": checks})
        body = problem(503, f"Not ready: {', '.join(failing)}.", slug="not-ready", checks=checks)
        return Response(
            body,
            status=503,
            headers={"Retry-After": str(READY_RETRY_AFTER_SECONDS)},
            content_type=PROBLEM_CONTENT_TYPE,
        )
