"""Credentials: register (or secure a guest account), sign in, and reset a forgotten password."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.functional import Promise
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User, hash_token
from avatarapp.actions.errors import ActionError, invalid_fields
from avatarapp.lib.ratelimit import allow
from avatarapp.lib.sms import send_sms

PHONE_RE = re.compile(r"^\+?[0-9]{8,15}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


def clean_credentials(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """An email address or a phone number (or both), normalised; an ActionError naming the field if not."""
    email = (email or "").strip().lower() or None
    phone = re.sub(r"[\s-]", "", phone or "") or None
    fields: dict[str, str | Promise] = {}
    if not email and not phone:
        fields["email"] = _("Enter an email address or a phone number.")
    if email and not EMAIL_RE.match(email):
        fields["email"] = _("Enter a valid email address.")
    if phone and not PHONE_RE.match(phone):
        fields["phone"] = _("Enter a valid phone number.")
    if fields:
        raise invalid_fields(fields)
    return email, phone


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise invalid_fields({"password": _("Use at least 8 characters.")})


def do_register(current: User | None, email: str | None, phone: str | None, password: str,
                language: str) -> User:
    """A registered account; a guest who registers keeps everything they made (same row, same id)."""
    email, phone = clean_credentials(email, phone)
    check_new_password(password)
    try:
        with transaction.atomic():
            if current is not None and current.is_guest:
                user = current
                user.email, user.phone, user.is_guest = email, phone, False
                user.set_password(password)
                user.save()
            else:
                user = User.objects.create_user(email=email, phone=phone, password=password, language=language)
    except IntegrityError:
        raise ActionError("already_registered", 409,
                          _("An account with these details already exists. Please log in.")) from None
    return user


def find_account(email: str | None, phone: str | None) -> User | None:
    return User.objects.filter(**({"email": email} if email else {"phone": phone}), is_active=True).first()


def do_sign_in(client_ip: str, email: str | None, phone: str | None, password: str) -> User:
    email, phone = clean_credentials(email, phone)
    if not allow("login", f"{client_ip}:{email or phone}", settings.AVATAR_RATE_LOGINS_PER_HOUR):
        raise ActionError("rate_limited", 429, _("Too many attempts. Please wait a little and try again."))
    user = find_account(email, phone)
    if user is None or not user.check_password(password):
        raise ActionError("invalid_credentials", 401, _("These details do not match an account."))
    return user


RESET_CODE_SECONDS = 10 * 60
RESET_CODE_TRIES = 5


def reset_code_key(user_id: object) -> str:
    return f"reset-code:{user_id}"


def do_start_password_reset(client_ip: str, email: str | None, phone: str | None,
                            reset_url: Callable[[str, str], str], language: str) -> str:
    """Send a reset link (email) or a 6-digit code (SMS) if an account matches; say the same either way.

    Returns "email" or "phone" (which the page asks for next), never whether an account exists,
    so nobody can learn who has an account here.
    """
    email, phone = clean_credentials(email, phone)
    if not allow("reset", f"{client_ip}:{email or phone}", settings.AVATAR_RATE_LOGINS_PER_HOUR):
        raise ActionError("rate_limited", 429, _("Too many attempts. Please wait a little and try again."))
    user = find_account(email, phone)
    if user is None or not user.has_usable_password():
        return "email" if email else "phone"
    with translation.override(language):
        if email:
            uid = urlsafe_base64_encode(force_bytes(user.pk))
            link = reset_url(uid, default_token_generator.make_token(user))
            body = _("Open this link to choose a new password: %(link)s\n"
                     "If you did not ask for this, ignore this message.") % {"link": link}
            send_mail(str(_("Reset your Chhavi password")), body, None, [email])
            return "email"
        code = f"{secrets.randbelow(10**6):06d}"
        cache.set(reset_code_key(user.pk), (hash_token(code), RESET_CODE_TRIES), RESET_CODE_SECONDS)
        send_sms(phone or "", _("Your Chhavi code is %(code)s. It works for 10 minutes.") % {"code": code})
    return "phone"


def do_reset_password_with_link(uidb64: str, token: str, password: str) -> User:
    try:
        user = User.objects.get(pk=urlsafe_base64_decode(uidb64).decode(), is_active=True)
    except (User.DoesNotExist, ValueError, TypeError, ValidationError):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        raise ActionError("invalid_reset", 400,
                          _("This link has expired or was already used. Please ask for a new one."))
    check_new_password(password)
    user.set_password(password)
    user.save()  # (this also makes the link unusable: the token hashes the password)
    return user


def do_reset_password_with_code(phone: str | None, code: str, password: str) -> User:
    phone = clean_credentials(None, phone)[1]
    user = find_account(None, phone)
    stored = cache.get(reset_code_key(user.pk)) if user else None
    if user is None or stored is None:
        raise ActionError("invalid_reset", 400, _("This code is wrong or has expired. Please ask for a new one."))
    expected, tries = stored
    if not secrets.compare_digest(expected, hash_token(code.strip())):
        # A code has 10^6 values: a few tries each, then it is gone.
        if tries <= 1:
            cache.delete(reset_code_key(user.pk))
        else:
            cache.set(reset_code_key(user.pk), (expected, tries - 1), RESET_CODE_SECONDS)
        raise ActionError("invalid_reset", 400, _("This code is wrong or has expired. Please ask for a new one."))
    check_new_password(password)
    cache.delete(reset_code_key(user.pk))
    user.set_password(password)
    user.save()
    return user
