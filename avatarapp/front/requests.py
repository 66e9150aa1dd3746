"""Who may see a page, and the request type the page then sees (typed for mypy)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse

from avatarapp.accounts.consent import has_consented
from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError

View = Callable[..., HttpResponseBase]


class UserRequest(HttpRequest):
    """A page request from a signed-in (possibly guest) user.

    The decorators below redirect anyone else, so the views behind them can treat
    `request.user` as a `User`, not an `AnonymousUser`.
    """

    user: User


def user_page(view: View, require_consent: bool) -> View:
    """Let a signed-in person through (and, if asked, only one who accepted the current
    consent text); anyone else goes to the consent page. An ActionError the page does not
    handle becomes the error page with its status (a 404 for someone else's picture, as the
    API answers)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated or (require_consent and not has_consented(request.user)):
            return redirect(f"{reverse('consent')}?next={request.path}" if require_consent else reverse("consent"))
        try:
            return view(request, *args, **kwargs)
        except ActionError as e:
            return render(request, "front/error.html", {"message": e.message}, status=e.status)

    return wrapper


def consented_user_required(view: View) -> View:
    """The making-pictures pages: a (guest) user who accepted the current text."""
    return user_page(view, require_consent=True)


def signed_in_required(view: View) -> View:
    """The account pages: anyone with an account, consented or not (a withdrawal must not lock them out)."""
    return user_page(view, require_consent=False)
