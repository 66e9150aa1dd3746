"""Bearer tokens: who a token belongs to, cached, and forgetting that when it changes.

Token -> user is looked up on every API request (a polling phone asks for its job
every second), so it is cached briefly. Deleting a token or saving its user clears
the entry (accounts/signals.py), so a logout or an erased account takes effect at once.
"""

from __future__ import annotations

from uuid import UUID

from django.core.cache import cache

from avatarapp.accounts.models import ApiToken, User, hash_token

TOKEN_CACHE_SECONDS = 60
USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


def token_cache_key(key_hash: str) -> str:
    return f"token:{key_hash}"


def user_for_token(raw: str) -> tuple[User, ApiToken] | None:
    """The active user a raw bearer token belongs to (and the token), or None."""
    key_hash = hash_token(raw)
    cached = cache.get(token_cache_key(key_hash))
    if cached is None:
        found = ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()
        if found is None:
            return None
        cached = (found.id, [getattr(found.user, name) for name in USER_FIELDS])
        cache.set(token_cache_key(key_hash), cached, TOKEN_CACHE_SECONDS)
    token_id, values = cached
    user = User.from_db("default", USER_FIELDS, values)
    if not user.is_active:
        return None
    return user, ApiToken(id=token_id, key_hash=key_hash, user=user)


def forget_token(key_hash: str) -> None:
    cache.delete(token_cache_key(key_hash))


def forget_tokens_of(user_id: UUID | str) -> None:
    hashes = ApiToken.objects.filter(user_id=user_id).values_list("key_hash", flat=True)
    cache.delete_many([token_cache_key(h) for h in hashes])
