"""Fixed-window rate limits kept in the cache (Redis in production), and who the client is.

A refusal also says when to come back: `allow` (and `refuse_for_window`) note the seconds left
in the window, and the guard middleware (front/middleware.py) sends them as the 429's Retry-After.

Two ways to count: `allow` counts every request and refuses once the window is full (guest
accounts, registrations, uploads); `hits` only looks, and `hit` counts one when the caller
decides it should (failed sign-ins: a correct password is never counted against anyone).

A limiter that cannot reach its cache lets the request through and logs a warning: a Redis
restart must slow nobody down, let alone answer 500 (issue 13, "degrade, don't fall over").
"""

from __future__ import annotations

import ipaddress
import time
from contextvars import ContextVar
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from avatarapp.lib.cache_breaker import CacheBreaker

# Seconds until the limit that refused this request lets it through again (None: none refused).
_retry_after: ContextVar[int | None] = ContextVar("retry_after", default=None)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def parse_address(text: str) -> Address | None:
    """An address as proxies write it ("1.2.3.4", "1.2.3.4:5678", "[2001:db8::1]:443", "::1"), or None."""
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def real_address(remote_addr: str, forwarded_for: str, proxies: tuple[str, ...]) -> Address | None:
    """The client's address: REMOTE_ADDR, unless that is a trusted proxy.

    Only then is X-Forwarded-For read, from the right: each trusted proxy appended the address
    it saw, so the right-most address that is not a trusted proxy is the client. Whatever lies
    further left was written by the client itself and proves nothing. An entry that is not an
    address stops the walk at the last trustworthy hop.
    """
    remote = parse_address(remote_addr)
    networks = trusted_networks(proxies)
    if remote is None or not networks or not is_trusted(remote, networks):
        return remote
    client = remote
    for hop in reversed(forwarded_for.split(",")):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not is_trusted(address, networks):
            break
    return client


def client_ip(request: HttpRequest) -> str:
    """Who the rate limits count this request against: the client's IPv4 address, or the /64
    of its IPv6 address (one home or phone is given a whole /64, so single addresses would let
    one client be many). Behind a proxy listed in AVATAR_TRUSTED_PROXIES, the address the proxy
    saw (X-Forwarded-For); with no proxy configured the header is ignored, so nobody can pose as
    someone else by sending it."""
    address = real_address(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""),
                           tuple(settings.AVATAR_TRUSTED_PROXIES))
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


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


def window_key(scope: str, ident: str, window_seconds: int, now: float) -> str:
    return f"rl:{scope}:{ident}:{int(now) // window_seconds}"


# A cache that fails is left alone for a few seconds; the limits let requests through meanwhile.
breaker = CacheBreaker(__name__, "rate limits", "letting requests through")


def _count(key: str, window_seconds: int) -> int:
    """Add one to the window's counter; its new value."""
    if cache.add(key, 1, timeout=window_seconds + 5):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_seconds + 5)
        return 1


def allow(scope: str, ident: str, limit: int, window_seconds: int = 3600) -> bool:
    """Count one hit for (scope, ident); False once `limit` hits fall in the window."""
    if limit <= 0 or breaker.paused():
        return True
    now = time.time()
    try:
        count = _count(window_key(scope, ident, window_seconds, now), window_seconds)
    except Exception as e:  # noqa: BLE001 - any cache failure: fail open
        breaker.failed(f"counting {scope!r}", e)
        return True
    if count > limit:
        note_retry_after(seconds_left(window_seconds, now))
        return False
    return True


def hits(counters: list[tuple[str, str]], window_seconds: int = 3600) -> list[int]:
    """This window's counts of several (scope, ident) counters, in one round trip (0s if the cache is down)."""
    now = time.time()
    keys = [window_key(scope, ident, window_seconds, now) for scope, ident in counters]
    if breaker.paused():
        return [0] * len(keys)
    try:
        found = cache.get_many(keys)
    except Exception as e:  # noqa: BLE001
        breaker.failed(f"counting {[scope for scope, _ in counters]}", e)
        found = {}
    return [int(found.get(key) or 0) for key in keys]


def hit(scope: str, ident: str, window_seconds: int = 3600) -> None:
    """Count one hit for (scope, ident) without deciding anything (see `hits`)."""
    if breaker.paused():
        return
    try:
        _count(window_key(scope, ident, window_seconds, time.time()), window_seconds)
    except Exception as e:  # noqa: BLE001
        breaker.failed(f"counting {scope!r}", e)


def forget(scope: str, ident: str, window_seconds: int = 3600) -> None:
    """Start (scope, ident) afresh in this window."""
    if breaker.paused():
        return
    try:
        cache.delete(window_key(scope, ident, window_seconds, time.time()))
    except Exception as e:  # noqa: BLE001
        breaker.failed(f"counting {scope!r}", e)


def refuse_for_window(window_seconds: int = 3600) -> None:
    """Note the Retry-After of a refusal decided from `hits`: the end of the current window."""
    note_retry_after(seconds_left(window_seconds))
