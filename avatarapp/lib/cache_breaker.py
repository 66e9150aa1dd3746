"""Standing aside from a cache that does not answer (Redis down or hung), for a few seconds at a time.

The bearer-token cache (accounts/tokens.py) and the rate limits (lib/ratelimit.py) both have a
fallback when the cache fails: the database, or letting the request through. Each keeps one
breaker: after a failure, that part of this process leaves the cache alone for `pause` seconds,
so a hung Redis costs one socket timeout per pause instead of several per request, and the log
gets one line per pause instead of one per request.
"""

from __future__ import annotations

import logging
import time


class CacheBreaker:
    def __init__(self, owner: str, what: str, fallback: str, pause: float = 5.0) -> None:
        self.log = logging.getLogger(owner)  # the module that stands aside logs it, under its own name
        self.what = what  # "token cache", "rate limits": who stands aside
        self.fallback = fallback  # what it does meanwhile, for the log line
        self.pause = pause
        self.paused_until = 0.0

    def paused(self) -> bool:
        return time.monotonic() < self.paused_until

    def failed(self, doing: str, error: Exception) -> None:
        """The cache failed while `doing`: log it (once per pause) and stand aside for a pause."""
        now = time.monotonic()
        if now >= self.paused_until:
            self.log.warning("%s: the cache is unreachable while %s (%s: %s); %s, trying the cache again in %.0f s",
                        self.what, doing, type(error).__name__, error, self.fallback, self.pause)
        self.paused_until = now + self.pause
