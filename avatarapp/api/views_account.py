"""Auth, consent and the account itself: /api/v1/auth/*, /consent, /me."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout as session_logout
from django.http import FileResponse, HttpRequest
from django.utils.translation import get_language
from ninja import Router

from avatarapp.accounts.consent import consent_text, consent_version
from avatarapp.accounts.models import ApiToken, User
from avatarapp.actions import accounts as account_actions
from avatarapp.actions import auth as auth_actions
from avatarapp.actions.jobs import quota_limit, quota_used
from avatarapp.api.auth import ApiRequest, bearer_user
from avatarapp.api.openapi import binary_response
from avatarapp.api.schemas import ConsentIn, ConsentOut, CredentialsIn, ErrorBody, MeOut, TokenOut
from avatarapp.lib.ratelimit import client_ip

router = Router(tags=["account"])

def token_body(user: User, token: str) -> dict[str, Any]:
    return {"token": token, "user": {"id": user.id, "is_guest": user.is_guest}}


def current_language() -> str:
    return (get_language() or "en").split("-")[0]


@router.post("/auth/guest", auth=None, response={201: TokenOut, 429: ErrorBody})
def create_guest(request: HttpRequest) -> tuple[int, dict[str, Any]]:
    user = account_actions.do_create_guest(client_ip(request), current_language())
    return 201, token_body(user, ApiToken.issue(user))


@router.post("/auth/register", auth=None,
             response={201: TokenOut, 400: ErrorBody, 409: ErrorBody, 429: ErrorBody})
def register(request: HttpRequest, body: CredentialsIn) -> tuple[int, dict[str, Any]]:
    # With a guest's token, the guest becomes the registered account and keeps what it made.
    user = auth_actions.do_register(client_ip(request), bearer_user(request), body.email, body.phone,
                                    body.password, current_language())
    return 201, token_body(user, ApiToken.issue(user))


@router.post("/auth/login", auth=None, response={200: TokenOut, 400: ErrorBody, 401: ErrorBody, 429: ErrorBody})
def login(request: HttpRequest, body: CredentialsIn) -> tuple[int, dict[str, Any]]:
    user = auth_actions.do_sign_in(client_ip(request), body.email, body.phone, body.password)
    return 200, token_body(user, ApiToken.issue(user))


@router.post("/auth/logout", response={204: None})
def logout(request: HttpRequest) -> tuple[int, None]:
    token = getattr(request, "api_token", None)
    if token is not None:
        token.delete()
    else:
        session_logout(request)
    return 204, None


@router.post("/auth/logout-everywhere", response={204: None, 401: ErrorBody, 409: ErrorBody})
def logout_everywhere(request: ApiRequest) -> tuple[int, None]:
    """Sign out everywhere: every token of this account (this one too) and every session end.

    A guest gets 409 ``guest_account``: without a password it could never sign in again.
    """
    auth_actions.do_sign_out_everywhere(request.auth)
    if getattr(request, "api_token", None) is None:
        session_logout(request)
    return 204, None


@router.get("/consent", auth=None, response=ConsentOut)
def get_consent(request: HttpRequest) -> dict[str, Any]:
    return {"version": consent_version(), "text": consent_text()}


@router.post("/me/consent", response={204: None, 400: ErrorBody})
def give_consent(request: ApiRequest, body: ConsentIn) -> tuple[int, None]:
    account_actions.do_give_consent(request.auth, body.version, body.adult)
    return 204, None


@router.delete("/me/consent", response={204: None})
def withdraw_consent(request: ApiRequest) -> tuple[int, None]:
    account_actions.do_withdraw_consent(request.auth)
    return 204, None


@router.get("/me", response=MeOut)
def me(request: ApiRequest) -> dict[str, Any]:
    user = request.auth
    return {
        "id": user.id,
        "is_guest": user.is_guest,
        "language": user.language,
        "consent_version": user.consent_version,
        "quota": {"used": quota_used(user), "limit": quota_limit(user)},
    }


@router.delete("/me", response={204: None})
def erase_me(request: ApiRequest) -> tuple[int, None]:
    account_actions.do_erase_user(request.auth)
    return 204, None


@router.get("/me/export", openapi_extra={
    "responses": binary_response("application/zip", description="A zip of the user's data and pictures.")})
def export_me(request: ApiRequest) -> FileResponse:
    return FileResponse(account_actions.build_export(request.auth), as_attachment=True,
                        filename=account_actions.EXPORT_NAME, content_type="application/zip")
