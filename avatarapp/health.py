"""/healthz (the process answers) and /readyz (the site can take a job and run it now).

Ready means: the database and the broker are reachable, and at least one generation
worker has its model loaded and warm (a fresh avatarapp.ops WorkerStatus row). A load
balancer or `make run` that waits for /readyz therefore never sends the first visitor
into a queue nobody is ready to serve.

The cache (Redis, with REDIS_URL: the same server as the broker) is checked too, and named
among the checks only when it fails, which makes /readyz 503 like any failed check. The
pages and the API keep answering meanwhile (tokens are read from the database, rate limits
let requests through, a new job gets 503 queue_unavailable). Every check gives up within
about a second (REDIS_SOCKET_TIMEOUT), so /readyz answers promptly when Redis is down or
hung, and /healthz, which touches nothing, stays 200.
"""

from __future__ import annotations

import secrets

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

from avatarapp.celery import app
from avatarapp.ops.models import WorkerStatus

OK = "ok"
CACHE_PROBE_KEY = "readyz:probe"


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
            # A fresh connection, tried twice at most: the transport's socket timeouts bound each try.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2, timeout=2)
    except Exception as e:  # noqa: BLE001
        return f"error: {type(e).__name__}"
    return OK


def check_cache() -> str:
    """Written and read back: a cache that takes writes but loses them is no cache either."""
    nonce = secrets.token_hex(8)
    try:
        cache.set(CACHE_PROBE_KEY, nonce, 10)
        stored = cache.get(CACHE_PROBE_KEY)
    except Exception as e:  # noqa: BLE001
        return f"error: {type(e).__name__}"
    # Another request's probe may have written in between: any probe value means it stores.
    return OK if isinstance(stored, str) and len(stored) == len(nonce) else "error: nothing stored"


def check_worker() -> str:
    try:
        warm = WorkerStatus.objects.fresh().exists()
    except Exception as e:  # noqa: BLE001 - the database check says why
        return f"error: {type(e).__name__}"
    return OK if warm else "no warm worker"


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "broker": check_broker()}
    cache_state = check_cache()
    if cache_state != OK:
        checks["cache"] = cache_state  # named only when it fails (see the module's docstring)
    checks["worker"] = check_worker() if checks["database"] == OK else "unknown: no database"
    ready = all(v == OK for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
