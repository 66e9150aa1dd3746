"""The privacy pages: the consent notice, and "Your data": consent (withdraw it), the photos kept,
export, sign out, erase.

Each is a plain form that works without JavaScript (CSRF-protected, POST for every
change). They call the same actions as the API, and like the consent page they speak
every language of the Eighth Schedule (avatarapp/languages.py).
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth import login, logout
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from avatarapp.accounts.consent import consent_text, consent_version
from avatarapp.actions.accounts import (
    EXPORT_NAME,
    build_export,
    do_create_guest,
    do_erase_user,
    do_give_consent,
    do_withdraw_consent,
)
from avatarapp.actions.auth import do_sign_out_everywhere
from avatarapp.actions.errors import ActionError
from avatarapp.actions.photos import do_delete_photo
from avatarapp.front.requests import UserRequest, signed_in_required
from avatarapp.lib.ratelimit import client_ip


def consent(request: HttpRequest) -> HttpResponse:
    error = None
    if request.method == "POST":
        if request.POST.get("adult") != "yes" or request.POST.get("agree") != "yes":
            error = _("Please tick both boxes to go on.")
        else:
            user = request.user
            try:
                if not user.is_authenticated:
                    user = do_create_guest(client_ip(request), (get_language() or "en").split("-")[0])
                    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                do_give_consent(user, consent_version(), adult=True)
            except ActionError as e:
                return render(request, "front/error.html", {"message": e.message}, status=e.status)
            next_url = request.POST.get("next", "")
            # Only a path on this site: "//host" and "/\\host" would send the person elsewhere.
            safe = url_has_allowed_host_and_scheme(next_url, allowed_hosts=None) and next_url.startswith("/")
            return redirect(next_url if safe else "upload")
    return render(request, "front/consent.html", {
        "consent_text": consent_text(),
        "error": error,
        "next": request.GET.get("next", request.POST.get("next", "")),
    }, status=400 if error else 200)


@never_cache
@signed_in_required
def your_data(request: UserRequest) -> HttpResponse:
    user = request.user
    return render(request, "front/account.html", {
        "consented_at": user.consent_at if user.consent_version else None,
        "photos": user.photos.order_by("-created_at"),
        "now": timezone.now(),
    })


@require_POST
@signed_in_required
def withdraw_consent(request: UserRequest) -> HttpResponse:
    do_withdraw_consent(request.user)
    messages.success(request, _("Consent withdrawn. Your photos were deleted and no new picture will be made."))
    return redirect("your_data")


@require_POST
@signed_in_required
def delete_photo(request: UserRequest, photo_id: UUID) -> HttpResponse:
    do_delete_photo(request.user, photo_id)
    messages.success(request, _("The photo was deleted."))
    return redirect("your_data")


@never_cache
@signed_in_required
def export(request: UserRequest) -> FileResponse:
    return FileResponse(build_export(request.user), as_attachment=True, filename=EXPORT_NAME,
                        content_type="application/zip")


@require_POST
@signed_in_required
def sign_out(request: UserRequest) -> HttpResponse:
    logout(request)
    messages.success(request, _("You are signed out."))
    return redirect("landing")


@require_POST
@signed_in_required
def sign_out_everywhere(request: UserRequest) -> HttpResponse:
    """Every session and every API token of this account end, this page's session too."""
    do_sign_out_everywhere(request.user)  # (a guest gets the error page: no password to come back with)
    logout(request)
    messages.success(request, _("You are signed out everywhere. Sign in again with your password."))
    return redirect("sign_in")


@never_cache
@signed_in_required
def delete_account(request: UserRequest) -> HttpResponse:
    """A confirmation page first: erasure cannot be undone."""
    if request.method == "POST":
        if request.POST.get("confirm") != "yes":
            return render(request, "front/account_delete.html",
                          {"error": _("Please tick the box to confirm.")}, status=400)
        user = request.user
        logout(request)  # the session row goes first, so nothing keeps the id
        do_erase_user(user)
        messages.success(request, _("Your account and everything in it were deleted."))
        return redirect("landing")
    return render(request, "front/account_delete.html", {"error": None})
