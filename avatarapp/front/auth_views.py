"""Sign up (or secure a guest account), sign in, and reset a forgotten password.

Plain forms without JavaScript, CSRF-protected, calling the same account actions as
the API. A guest who signs up keeps everything they made: the same account gains an
email address or phone number and a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from avatarapp.accounts.models import User
from avatarapp.actions.auth import (
    account_ident,
    check_sign_in_allowed,
    do_register,
    do_reset_password_with_code,
    do_reset_password_with_link,
    do_sign_in,
    do_start_password_reset,
    note_failed_sign_in,
    note_good_sign_in,
)
from avatarapp.actions.errors import ActionError
from avatarapp.lib.ratelimit import client_ip

BACKEND = "django.contrib.auth.backends.ModelBackend"


@dataclass
class Field:
    name: str
    label: str | Promise
    type: str = "text"
    autocomplete: str = "off"
    required: bool = False
    value: str = ""
    error: str | Promise = ""


def email_field(value: str = "") -> Field:
    return Field("email", gettext_lazy("Email address"), "email", "email", value=value)


def phone_field(value: str = "") -> Field:
    return Field("phone", gettext_lazy("Or phone number"), "tel", "tel", value=value)


PASSWORD = gettext_lazy("Password")
NEW_PASSWORD = gettext_lazy("New password")


def password_field(autocomplete: str, label: str | Promise = PASSWORD) -> Field:
    return Field("password", label, "password", autocomplete, required=True)


def language() -> str:
    return (get_language() or "en").split("-")[0]


def form_page(request: HttpRequest, fields: list[Field], title: str | Promise, button: str | Promise,
              error: ActionError | None = None, **context: Any) -> HttpResponse:
    """The shared form page; an ActionError's per-field messages go beside their fields."""
    for field in fields:
        field.error = (error.fields or {}).get(field.name, "") if error else ""
        if field.type == "password":
            field.value = ""  # never echoed back into the page
    message = error.message if error and not error.fields else None
    return render(request, "front/account_form.html", {
        "title": title, "button": button, "fields": fields, "error": message, **context,
    }, status=error.status if error else 200)


@never_cache
def sign_up(request: HttpRequest) -> HttpResponse:
    current = request.user if request.user.is_authenticated else None
    is_guest = isinstance(current, User) and current.is_guest
    title = _("Keep your pictures: secure your account") if is_guest else _("Create an account")
    post = request.POST
    fields = [email_field(post.get("email", "")), phone_field(post.get("phone", "")), password_field("new-password")]
    if request.method == "POST":
        try:
            user = do_register(client_ip(request), current, post.get("email"), post.get("phone"),
                               post.get("password", ""), language())
        except ActionError as e:
            return form_page(request, fields, title, _("Save"), e)
        login(request, user, backend=BACKEND)
        messages.success(request, _("Your account is ready. Sign in with these details on any phone."))
        return redirect("gallery")
    intro = _("Add an email address or a phone number and a password. Everything you made stays yours.") \
        if is_guest else None
    return form_page(request, fields, title, _("Save"), intro=intro,
                     links=[{"url": reverse("sign_in"), "label": _("I already have an account")}])


@never_cache
def sign_in(request: HttpRequest) -> HttpResponse:
    post = request.POST
    fields = [email_field(post.get("email", "")), phone_field(post.get("phone", "")),
              password_field("current-password")]
    if request.method == "POST":
        try:
            user = do_sign_in(client_ip(request), post.get("email"), post.get("phone"), post.get("password", ""))
        except ActionError as e:
            return form_page(request, fields, _("Sign in"), _("Sign in"), e)
        login(request, user, backend=BACKEND)
        return redirect("gallery")
    return form_page(request, fields, _("Sign in"), _("Sign in"), links=[
        {"url": reverse("reset_password"), "label": _("Forgot your password?")},
        {"url": reverse("sign_up"), "label": _("Create an account")},
    ])


@never_cache
def reset_password(request: HttpRequest) -> HttpResponse:
    post = request.POST
    fields = [email_field(post.get("email", "")), phone_field(post.get("phone", ""))]
    title = _("Reset your password")
    if request.method == "POST":
        try:
            sent_by = do_start_password_reset(
                client_ip(request), post.get("email"), post.get("phone"),
                lambda uid, token: settings.SITE_URL + reverse("reset_with_link", args=[uid, token]), language())
        except ActionError as e:
            return form_page(request, fields, title, _("Send"), e)
        if sent_by == "phone":
            return redirect(f"{reverse('reset_with_code')}?phone={post.get('phone', '').strip()}")
        messages.success(request,
                         _("If an account has this email address, we sent it a link to choose a new password."))
        return redirect("sign_in")
    return form_page(request, fields, title, _("Send"),
                     intro=_("We will send a link to your email address, or a code to your phone."))


@never_cache
def reset_with_code(request: HttpRequest) -> HttpResponse:
    post = request.POST
    phone = post.get("phone", request.GET.get("phone", ""))
    fields = [Field("phone", gettext_lazy("Phone number"), "tel", "tel", True, phone),
              Field("code", gettext_lazy("Code"), "text", "one-time-code", True),
              password_field("new-password", NEW_PASSWORD)]
    title = _("Enter the code we sent")
    if request.method == "POST":
        try:
            user = do_reset_password_with_code(post.get("phone"), post.get("code", ""), post.get("password", ""))
        except ActionError as e:
            return form_page(request, fields, title, _("Save"), e)
        login(request, user, backend=BACKEND)
        messages.success(request, _("Your new password is saved."))
        return redirect("gallery")
    return form_page(request, fields, title, _("Save"),
                     intro=_("If an account has this phone number, we sent it a 6-digit code."))


@never_cache
def reset_with_link(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    fields = [password_field("new-password", NEW_PASSWORD)]
    title = _("Choose a new password")
    if request.method == "POST":
        try:
            user = do_reset_password_with_link(uidb64, token, request.POST.get("password", ""))
        except ActionError as e:
            return form_page(request, fields, title, _("Save"), e)
        login(request, user, backend=BACKEND)
        messages.success(request, _("Your new password is saved."))
        return redirect("gallery")
    return form_page(request, fields, title, _("Save"))


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """Django admin's sign-in page, under the same sign-in limits as the site and the API.

    A POST the admin answers with its form again (200) failed; a redirect let someone in.
    """
    if request.method != "POST":
        return admin.site.login(request, extra_context)
    ip, account = client_ip(request), account_ident((request.POST.get("username") or "").strip().lower(), None)
    try:
        check_sign_in_allowed(ip, account)
    except ActionError as e:
        return render(request, "front/error.html", {"message": e.message}, status=e.status)
    response = admin.site.login(request, extra_context)
    if response.status_code == 200:
        note_failed_sign_in(ip, account)
    elif response.status_code == 302 and request.user.is_authenticated:
        note_good_sign_in(ip, account)
    return response
