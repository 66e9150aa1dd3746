"""Who is asking: a bearer token for API clients, the session for the site's pages."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from avatarapp.accounts.models import ApiToken, User
from avatarapp.accounts.tokens import user_for_token
from avatarapp.actions.errors import ActionError
from avatarapp.lib.refusals import CSRF_FAILED


class ApiRequest(HttpRequest):
    """A request that passed API_AUTH: ninja has set `auth` to the caller.

    `api_token` is there only when the caller came with a bearer token (see logout).
    """

    auth: User
    api_token: ApiToken


class BearerAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        found = user_for_token(token)
        if found is None:
            return None
        authed = cast(ApiRequest, request)
        authed.user, authed.api_token = found
        return found[0]


class ActiveSessionAuth(SessionAuth):
    """The logged-in session user, CSRF-checked for unsafe methods.

    Only a request that has a signed-in session is checked: that is what a forged cross-site
    request would ride on. ninja checks CSRF before it looks for a session, so a client with
    no session and a missing, malformed or revoked bearer token got 403 "CSRF check Failed"
    (English) instead of the contract's 401 ``not_authenticated``; without a session there is
    nothing to forge, so it now falls through to the 401. A session request that fails the
    check is a localised 403 ``csrf_failed``.
    """

    def __call__(self, request: HttpRequest) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        try:
            return super().__call__(request)
        except HttpError as e:
            if e.status_code != 403:
                raise
            raise ActionError("csrf_failed", 403, CSRF_FAILED) from None

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        return user if user and user.is_active else None


def bearer_user(request: HttpRequest) -> User | None:
    """The token's user, for endpoints that accept a token but do not require one."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return BearerAuth().authenticate(request, header[7:].strip())


class NoOne:
    """Stands for a caller with no valid credentials on the private image URLs.

    DESIGN.md: those URLs answer the owner and give anyone else a 404, so a stranger
    cannot even learn that the picture exists (a 401 would tell them it does).
    """

    def __call__(self, request: HttpRequest) -> NoOne:
        return self


API_AUTH = [BearerAuth(), ActiveSessionAuth()]
IMAGE_AUTH = [*API_AUTH, NoOne()]


def owner_or_none(request: HttpRequest) -> User | None:
    """The caller on the private image URLs (IMAGE_AUTH), or None for NoOne."""
    auth: object = getattr(request, "auth", None)
    return auth if isinstance(auth, User) else None
