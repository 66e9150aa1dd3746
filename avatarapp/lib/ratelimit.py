"""Fixed-window rate limits kept in the cache (Redis in production)."""

from __future__ import annotations

import time

from django.core.cache import cache
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def allow(scope: str, ident: str, limit: int, window_seconds: int = 3600) -> bool:
    """Count one hit for (scope, ident); False once `limit` hits fall in the window."""
    if limit <= 0:
        return True
    window = int(time.time()) // window_seconds
    key = f"rl:{scope}:{ident}:{window}"
    if cache.add(key, 1, timeout=window_seconds + 5):
        return True
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_seconds + 5)
        return True
    return count <= limit
