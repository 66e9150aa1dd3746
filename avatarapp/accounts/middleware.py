"""Remember the language a signed-in person reads, for what they get outside a page.

The page language comes from the cookie or Accept-Language; the account keeps a copy
because the worker draws the "AI-generated" label, and share cards speak, in it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.utils.translation import get_language

from avatarapp.accounts.tokens import forget_tokens_of


class RememberLanguageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/"):
            return response  # an API client's Accept-Language is not a choice of language
        user = getattr(request, "user", None)
        language = (get_language() or "").split("-")[0]
        if user is not None and user.is_authenticated and language and user.language != language:
            get_user_model().objects.filter(pk=user.pk).update(language=language)
            forget_tokens_of(user.pk)
        return response
