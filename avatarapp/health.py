"""/healthz (the process answers) and /readyz (the site can take a job and run it now).

Ready means: the database and the broker are reachable, and at least one generation
worker has its model loaded and warm (a fresh avatarapp.ops WorkerStatus row). A load
balancer or `make run` that waits for /readyz therefore never sends the first visitor
into a queue nobody is ready to serve.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse

from avatarapp.celery import app
from avatarapp.ops.models import WorkerStatus

OK = "ok"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure means "not ready", named in the answer
        return f"error: {type(e).__name__}"
    return OK


def check_broker() -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as e:  # noqa: BLE001
        return f"error: {type(e).__name__}"
    return OK


def check_worker() -> str:
    try:
        warm = WorkerStatus.objects.fresh().exists()
    except Exception as e:  # noqa: BLE001 - the database check says why
        return f"error: {type(e).__name__}"
    return OK if warm else "no warm worker"


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "broker": check_broker()}
    checks["worker"] = check_worker() if checks["database"] == OK else "unknown: no database"
    ready = all(v == OK for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
