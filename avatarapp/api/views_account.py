"""Auth, consent and the account itself: /api/v1/auth/*, /consent, /me."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from ninja import Router

from avatarapp.accounts import actions as account_actions
from avatarapp.accounts.consent import consent_text, consent_version
from avatarapp.accounts.models import ApiToken, User
from avatarapp.api.auth import bearer_user
from avatarapp.api.errors import ApiError
from avatarapp.api.schemas import ConsentIn, ConsentOut, CredentialsIn, ErrorBody, MeOut, TokenOut
from avatarapp.jobs.actions import quota_limit, quota_used
from avatarapp.ratelimit import allow, client_ip

router = Router(tags=["account"])

PHONE_RE = re.compile(r"^\+?[0-9]{8,15}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def token_body(user: User, token: str) -> dict:
    return {"token": token, "user": {"id": user.id, "is_guest": user.is_guest}}


def current_language() -> str:
    return (get_language() or "en").split("-")[0]


@router.post("/auth/guest", auth=None, response={201: TokenOut, 429: ErrorBody})
def create_guest(request: HttpRequest):
    if not allow("guest", client_ip(request), settings.AVATAR_RATE_GUESTS_PER_HOUR):
        raise ApiError(429, "rate_limited", _("Too many requests. Please wait a little and try again."))
    user = User.objects.create_guest(language=current_language())
    return 201, token_body(user, ApiToken.issue(user))


def clean_credentials(body: CredentialsIn) -> tuple[str | None, str | None]:
    email = (body.email or "").strip().lower() or None
    phone = re.sub(r"[\s-]", "", body.phone or "") or None
    fields = {}
    if not email and not phone:
        fields["email"] = _("Enter an email address or a phone number.")
    if email and not EMAIL_RE.match(email):
        fields["email"] = _("Enter a valid email address.")
    if phone and not PHONE_RE.match(phone):
        fields["phone"] = _("Enter a valid phone number.")
    if fields:
        raise ApiError(400, "invalid_fields", _("Please check the highlighted fields."), fields=fields)
    return email, phone


@router.post("/auth/register", auth=None, response={201: TokenOut, 400: ErrorBody, 409: ErrorBody})
def register(request: HttpRequest, body: CredentialsIn):
    email, phone = clean_credentials(body)
    if len(body.password) < 8:
        raise ApiError(400, "invalid_fields", _("Please check the highlighted fields."),
                       fields={"password": _("Use at least 8 characters.")})
    guest = bearer_user(request)
    try:
        with transaction.atomic():
            if guest is not None and guest.is_guest:
                # Upgrading keeps the guest's photos and pictures.
                user = guest
                user.email, user.phone, user.is_guest = email, phone, False
                user.set_password(body.password)
                user.save()
            else:
                user = User.objects.create_user(email=email, phone=phone, password=body.password,
                                                language=current_language())
    except IntegrityError:
        raise ApiError(409, "already_registered", _("An account with these details already exists. Please log in.")) from None
    return 201, token_body(user, ApiToken.issue(user))


@router.post("/auth/login", auth=None, response={200: TokenOut, 400: ErrorBody, 401: ErrorBody, 429: ErrorBody})
def login(request: HttpRequest, body: CredentialsIn):
    email, phone = clean_credentials(body)
    ident = email or phone
    if not allow("login", f"{client_ip(request)}:{ident}", settings.AVATAR_RATE_LOGINS_PER_HOUR):
        raise ApiError(429, "rate_limited", _("Too many attempts. Please wait a little and try again."))
    user = User.objects.filter(**({"email": email} if email else {"phone": phone})).first()
    if user is None or not user.is_active or not user.check_password(body.password):
        raise ApiError(401, "invalid_credentials", _("These details do not match an account."))
    return 200, token_body(user, ApiToken.issue(user))


@router.post("/auth/logout", response={204: None})
def logout(request: HttpRequest):
    token = getattr(request, "api_token", None)
    if token is not None:
        token.delete()
    else:
        from django.contrib.auth import logout as session_logout

        session_logout(request)
    return 204, None


@router.get("/consent", auth=None, response=ConsentOut)
def get_consent(request: HttpRequest):
    return {"version": consent_version(), "text": consent_text()}


@router.post("/me/consent", response={204: None, 400: ErrorBody})
def give_consent(request: HttpRequest, body: ConsentIn):
    if body.version != consent_version():
        raise ApiError(400, "consent_outdated", _("Please read and accept the current consent text."),
                       fields={"version": _("This is not the current version.")})
    if body.adult is not True:
        raise ApiError(400, "adult_required", _("You must be 18 or older to use Chhavi."),
                       fields={"adult": _("Please confirm that you are 18 or older.")})
    account_actions.do_record_consent(request.auth, body.version)
    return 204, None


@router.get("/me", response=MeOut)
def me(request: HttpRequest):
    user = request.auth
    return {
        "id": user.id,
        "is_guest": user.is_guest,
        "language": user.language,
        "consent_version": user.consent_version,
        "quota": {"used": quota_used(user), "limit": quota_limit(user)},
    }


@router.delete("/me", response={204: None})
def erase_me(request: HttpRequest):
    account_actions.do_erase_user(request.auth)
    return 204, None


@router.get("/me/export")
def export_me(request: HttpRequest):
    data = account_actions.build_export(request.auth)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = 'attachment; filename="chhavi-export.zip"'
    return response
