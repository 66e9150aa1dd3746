"""Credentials: register (or secure a guest account), sign in, reset a forgotten password, and
sign out everywhere.

How these resist attack (README, "Accounts"):

- every new password passes Django's validators (settings.AUTH_PASSWORD_VALIDATORS);
- registrations and reset requests are limited per client address (`allow`), reset messages
  per account (past that limit the answer is the same, only no new message goes out);
- sign-in counts only *failures*: per client, per (client, account), and per account. The
  per-account count is soft: past it, each client gets only UNDER_ATTACK_TRIES failures on
  that account, so a crowd of addresses cannot guess on, while the owner, from an address
  that has not failed, still signs in with the right password. Nobody can lock anyone out;
- an unknown account costs the same password hash as a known one (`password_matches`), and
  gets the same status and message as a wrong password.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import check_password, get_hasher, make_password
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.functional import Promise
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User, hash_token
from avatarapp.accounts.tokens import revoke_tokens_of
from avatarapp.actions.errors import ActionError, invalid_fields
from avatarapp.lib.ratelimit import allow, forget, hit, hits, note_retry_after, refuse_for_window
from avatarapp.lib.sms import send_sms

log = logging.getLogger(__name__)

PHONE_RE = re.compile(r"^\+?[0-9]{8,15}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TOO_MANY_ATTEMPTS = _("Too many attempts. Please wait a little and try again.")
NO_MATCH = _("These details do not match an account.")
# Failed sign-ins each client may make on an account whose failures passed the per-account limit.
UNDER_ATTACK_TRIES = 3


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


def check_new_password(password: str, user: User) -> None:
    """Django's password validators (settings.AUTH_PASSWORD_VALIDATORS), as a 400 naming the field.

    `user` may be unsaved: the similarity check only reads its email and phone.
    """
    try:
        password_validation.validate_password(password, user)
    except ValidationError as e:
        raise invalid_fields({"password": " ".join(e.messages)}) from None


def account_ident(email: str | None, phone: str | None) -> str:
    """What the per-account limits count against: a hash, so no address sits in the cache."""
    return hashlib.sha256((f"email:{email}" if email else f"phone:{phone}").encode()).hexdigest()[:32]


def do_register(client_ip: str, current: User | None, email: str | None, phone: str | None, password: str,
                language: str) -> User:
    """A registered account; a guest who registers keeps everything they made (same row, same id).

    Limited per client address (each one costs a password hash, and a fresh account a fresh daily
    quota). An address already registered is a 409, as the contract says: the person must learn
    to sign in instead. It costs the same hash as a new one (the insert fails after hashing), and
    the limit keeps anyone from trying many addresses.
    """
    email, phone = clean_credentials(email, phone)
    check_new_password(password, User(email=email, phone=phone))
    if not allow("register", client_ip, settings.AVATAR_RATE_REGISTRATIONS_PER_HOUR):
        raise ActionError("rate_limited", 429, TOO_MANY_ATTEMPTS)
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


# A password hash nobody's password matches, made once (at import) with the preferred hasher:
# an unknown account is checked against it, so it costs what a known one costs.
_dummy_hash = [make_password(secrets.token_urlsafe(24))]


def dummy_password_hash() -> str:
    hasher = get_hasher()
    if not _dummy_hash[0].startswith(f"{hasher.algorithm}$") or hasher.must_update(_dummy_hash[0]):
        _dummy_hash[0] = make_password(secrets.token_urlsafe(24))  # the hasher or its cost changed
    return _dummy_hash[0]


def password_matches(user: User | None, password: str) -> bool:
    """Whether `password` is the user's; one full password hash whether or not there is such a user."""
    if user is None or not user.has_usable_password():
        check_password(password, dummy_password_hash())
        return False
    return user.check_password(password)


def check_sign_in_allowed(client_ip: str, account: str) -> None:
    """A 429 if this client failed too often, on any account or on this one (module docstring)."""
    client_failures, pair_failures, account_failures = hits(
        [("login-client", client_ip), ("login", f"{client_ip}:{account}"), ("login-account", account)])
    pair_limit = settings.AVATAR_RATE_LOGINS_PER_HOUR
    if account_failures >= settings.AVATAR_RATE_ACCOUNT_LOGIN_FAILURES_PER_HOUR:
        pair_limit = min(pair_limit, UNDER_ATTACK_TRIES)
    if client_failures >= settings.AVATAR_RATE_CLIENT_LOGIN_FAILURES_PER_HOUR or pair_failures >= pair_limit:
        refuse_for_window()
        raise ActionError("rate_limited", 429, TOO_MANY_ATTEMPTS)


def note_failed_sign_in(client_ip: str, account: str) -> None:
    hit("login-client", client_ip)
    hit("login", f"{client_ip}:{account}")
    hit("login-account", account)


def note_good_sign_in(client_ip: str, account: str) -> None:
    """The owner is in: this client's failures on this account are forgiven (not its others)."""
    forget("login", f"{client_ip}:{account}")


def do_sign_in(client_ip: str, email: str | None, phone: str | None, password: str) -> User:
    email, phone = clean_credentials(email, phone)
    account = account_ident(email, phone)
    check_sign_in_allowed(client_ip, account)
    user = find_account(email, phone)
    matched = password_matches(user, password)  # (hashes whether or not the account exists)
    if user is None or not matched:
        note_failed_sign_in(client_ip, account)
        raise ActionError("invalid_credentials", 401, NO_MATCH)
    note_good_sign_in(client_ip, account)
    return user


def do_sign_out_everywhere(user: User) -> None:
    """Revoke every API token of the user and end every session (the session epoch, accounts/models.py).

    A guest is refused: with no password, a guest signed out can never sign in again.
    """
    if user.is_guest:
        raise ActionError("guest_account", 409, _("Secure your account with a password first: "
                                                  "a guest who signs out cannot sign in again."))
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
        revoke_tokens_of(user.pk)
    user.refresh_from_db(fields=["session_epoch"])


RESET_CODE_SECONDS = 10 * 60
RESET_CODE_TRIES = 5


def reset_code_key(user_id: object) -> str:
    return f"reset-code:{user_id}"


def do_start_password_reset(client_ip: str, email: str | None, phone: str | None,
                            reset_url: Callable[[str, str], str], language: str) -> str:
    """Send a reset link (email) or a 6-digit code (SMS) if an account matches; say the same either way.

    Returns "email" or "phone" (which the page asks for next), never whether an account exists,
    so nobody can learn who has an account here. Requests are limited per client address (429);
    messages per account, silently: past that limit the answer is unchanged and no new message
    goes out, so a stranger can neither flood someone's inbox or phone nor stop them resetting
    (the links already sent still work; the last code works for its 10 minutes).
    """
    email, phone = clean_credentials(email, phone)
    if not allow("reset", client_ip, settings.AVATAR_RATE_RESETS_PER_HOUR):
        raise ActionError("rate_limited", 429, TOO_MANY_ATTEMPTS)
    if not allow("reset-account", account_ident(email, phone), settings.AVATAR_RATE_ACCOUNT_RESETS_PER_HOUR):
        note_retry_after(None)  # not a 429: the answer must not differ
        return "email" if email else "phone"
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
        try:
            cache.set(reset_code_key(user.pk), (hash_token(code), RESET_CODE_TRIES), RESET_CODE_SECONDS)
        except Exception as e:  # noqa: BLE001 - a code nobody can check is not worth sending
            log.error("reset code not sent: the cache is unreachable (%s: %s)", type(e).__name__, e)
            return "phone"
        send_sms(phone or "", _("Your Chhavi code is %(code)s. It works for 10 minutes.") % {"code": code})
    return "phone"


def set_new_password(user: User, password: str) -> None:
    """Save a new password; every session (their HMAC changes with it) and every API token end."""
    user.set_password(password)
    with transaction.atomic():
        user.save()  # (this also makes a reset link unusable: the token hashes the password)
        revoke_tokens_of(user.pk)


def do_reset_password_with_link(uidb64: str, token: str, password: str) -> User:
    try:
        user = User.objects.get(pk=urlsafe_base64_decode(uidb64).decode(), is_active=True)
    except (User.DoesNotExist, ValueError, TypeError, ValidationError):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        raise ActionError("invalid_reset", 400,
                          _("This link has expired or was already used. Please ask for a new one."))
    check_new_password(password, user)
    set_new_password(user, password)
    return user


def _cached_code(user: User | None) -> tuple[str, int] | None:
    if user is None:
        return None
    try:
        stored: tuple[str, int] | None = cache.get(reset_code_key(user.pk))
    except Exception as e:  # noqa: BLE001
        log.warning("reset code not checked: the cache is unreachable (%s: %s)", type(e).__name__, e)
        return None
    return stored


def do_reset_password_with_code(phone: str | None, code: str, password: str) -> User:
    phone = clean_credentials(None, phone)[1]
    user = find_account(None, phone)
    stored = _cached_code(user)
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
    check_new_password(password, user)
    cache.delete(reset_code_key(user.pk))
    set_new_password(user, password)
    return user
