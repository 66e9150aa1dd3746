"""Fixed-window rate limits kept in the cache (Redis in production).

A refusal also says when to come back: `allow` notes the seconds left in the window,
and the guard middleware (front/middleware.py) sends them as the 429's Retry-After.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from django.core.cache import cache
from django.http import HttpRequest

# Seconds until the limit that refused this request lets it through again (None: none refused).
_retry_after: ContextVar[int | None] = ContextVar("retry_after", default=None)


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def seconds_left(window_seconds: int, now: float | None = None) -> int:
    """Seconds until the current fixed window ends (at least 1)."""
    now = time.time() if now is None else now
    return max(1, window_seconds - int(now) % window_seconds)


def note_retry_after(seconds: int | None) -> None:
    """Say when the caller of this request may try again (None forgets it; each request starts so)."""
    _retry_after.set(seconds)


def retry_after() -> int | None:
    """What the refusing limit noted in this request, if one did."""
    return _retry_after.get()


def allow(scope: str, ident: str, limit: int, window_seconds: int = 3600) -> bool:
    """Count one hit for (scope, ident); False once `limit` hits fall in the window."""
    if limit <= 0:
        return True
    now = time.time()
    window = int(now) // window_seconds
    key = f"rl:{scope}:{ident}:{window}"
    if cache.add(key, 1, timeout=window_seconds + 5):
        return True
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_seconds + 5)
        return True
    if count > limit:
        note_retry_after(seconds_left(window_seconds, now))
        return False
    return True
