"""Bearer tokens: who a token belongs to, cached, and forgetting that when it changes.

Token -> user is looked up on every API request (a polling phone asks for its job
every second), so it is cached briefly. Deleting a token or saving its user clears
the entry (accounts/signals.py), so a logout or an erased account takes effect at once.

A token unused for AVATAR_TOKEN_IDLE_DAYS is refused (and deleted). Its `last_used_at` is
written at most once a minute per token, never on every request: the cached entry carries
the time of the last write, a request that finds it over a minute old writes the new time
(one UPDATE, which a concurrent request that got there first makes a no-op) and drops the
entry, and the next request reads the row afresh.

If the cache is unreachable, tokens are read from the database on every request (slower,
never a 500), and the failure is logged, once per pause (lib/cache_breaker.py) in each process.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from avatarapp.accounts.models import ApiToken, User, hash_token
from avatarapp.lib.cache_breaker import CacheBreaker

TOKEN_CACHE_SECONDS = 60
# At most one write of last_used_at per token per this many seconds.
TOKEN_REFRESH_SECONDS = 60
USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


def token_cache_key(key_hash: str) -> str:
    return f"token2:{key_hash}"  # (token id, last used as a timestamp, the user's fields)


# A cache that fails is left alone for a few seconds; tokens are read from the database meanwhile.
breaker = CacheBreaker(__name__, "token cache", "reading tokens from the database")


def _cache_get(key: str) -> Any:
    if breaker.paused():
        return None
    try:
        return cache.get(key)
    except Exception as e:  # noqa: BLE001 - the database still answers
        breaker.failed("reading", e)
        return None


def _cache_set(key: str, value: Any) -> None:
    if breaker.paused():
        return
    try:
        cache.set(key, value, TOKEN_CACHE_SECONDS)
    except Exception as e:  # noqa: BLE001
        breaker.failed("caching", e)


def _cache_forget(keys: list[str]) -> None:
    try:
        cache.delete_many(keys)
    except Exception as e:  # noqa: BLE001
        # An entry left behind lives at most TOKEN_CACHE_SECONDS.
        breaker.failed(f"clearing {len(keys)} entries", e)


def idle_seconds() -> int:
    return int(settings.AVATAR_TOKEN_IDLE_DAYS) * 24 * 3600


def user_for_token(raw: str) -> tuple[User, ApiToken] | None:
    """The active user a raw bearer token belongs to (and the token), or None (also for an idle one)."""
    key_hash = hash_token(raw)
    key = token_cache_key(key_hash)
    cached = _cache_get(key)
    if cached is None:
        found = ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()
        if found is None:
            return None
        cached = (found.id, found.last_used_at.timestamp(), [getattr(found.user, name) for name in USER_FIELDS])
        _cache_set(key, cached)
    token_id, last_used, values = cached
    now = time.time()
    if now - last_used > idle_seconds():
        ApiToken.objects.filter(id=token_id).delete()  # (its signal clears the cache entry)
        return None
    user = User.from_db("default", USER_FIELDS, values)
    if not user.is_active:
        return None
    if now - last_used >= TOKEN_REFRESH_SECONDS:
        just_now = timezone.now()
        ApiToken.objects.filter(id=token_id, last_used_at__lt=just_now - timedelta(seconds=TOKEN_REFRESH_SECONDS)) \
            .update(last_used_at=just_now)
        forget_token(key_hash)
    return user, ApiToken(id=token_id, key_hash=key_hash, user=user)


def forget_token(key_hash: str) -> None:
    _cache_forget([token_cache_key(key_hash)])


def forget_tokens_of(user_id: UUID | str) -> None:
    hashes = ApiToken.objects.filter(user_id=user_id).values_list("key_hash", flat=True)
    _cache_forget([token_cache_key(h) for h in hashes])


def revoke_tokens_of(user_id: UUID | str) -> int:
    """Delete every token of the user (and their cache entries); how many there were."""
    forget_tokens_of(user_id)
    deleted, _ = ApiToken.objects.filter(user_id=user_id).delete()
    return deleted
