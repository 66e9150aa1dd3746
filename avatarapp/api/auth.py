"""Who is asking: a bearer token for API clients, the session for the site's pages."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from avatarapp.accounts.models import ApiToken, User, hash_token


class BearerAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        # get(), not filter().first(): key_hash is unique, and first() would add an ORDER BY
        # this lookup, made on every API request, does not need.
        try:
            found = ApiToken.objects.select_related("user").get(key_hash=hash_token(token))
        except ApiToken.DoesNotExist:
            return None
        if not found.user.is_active:
            return None
        request.user = found.user
        request.api_token = found
        return found.user


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
