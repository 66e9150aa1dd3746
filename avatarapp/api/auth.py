"""Who is asking: a bearer token for API clients, the session for the site's pages."""

from __future__ import annotations

from django.core.cache import cache
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from avatarapp.accounts.models import ApiToken, User, hash_token

# Token -> user is looked up on every API request (a polling phone asks for its job every
# second), so it is cached briefly. Deleting a token or saving its user clears the entry
# (see accounts/signals.py), so a logout or an erased account takes effect at once.
TOKEN_CACHE_SECONDS = 60
USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


def token_cache_key(key_hash: str) -> str:
    return f"token:{key_hash}"


class BearerAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        key_hash = hash_token(token)
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
        request.user = user
        request.api_token = ApiToken(id=token_id, key_hash=key_hash, user=user)
        return user


class ActiveSessionAuth(SessionAuth):
    """The logged-in session user (CSRF-checked for unsafe methods by ninja)."""

    def authenticate(self, request: HttpRequest, key):
        user = super().authenticate(request, key)
        return user if user and user.is_active else None


def bearer_user(request: HttpRequest) -> User | None:
    """The token's user, for endpoints that accept a token but do not require one."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return BearerAuth().authenticate(request, header[7:].strip())


API_AUTH = [BearerAuth(), ActiveSessionAuth()]
