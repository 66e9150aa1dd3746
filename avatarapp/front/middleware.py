"""Keep every page in one language: notice-only languages speak on the privacy pages alone."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation

from avatarapp.languages import ALL_LANGUAGES, NOTICE_ONLY_CODES, SITE_LANGUAGES, is_privacy_path
from avatarapp.ops.models import only_demo_model

FALLBACK = "en"


class NoticeLanguageFallbackMiddleware:
    """After LocaleMiddleware: a language with only the privacy notice translated (Bodo, Santali, …)
    gets that notice and its pages in full, and every other page in English, not a mix."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if translation.get_language() in NOTICE_ONLY_CODES and not is_privacy_path(request.path):
            translation.activate(FALLBACK)
            request.LANGUAGE_CODE = FALLBACK
        return self.get_response(request)


def language_choices(request: HttpRequest) -> dict[str, list[str]]:
    """Context processor: the picker offers all 23 languages on privacy pages, the site's 12 elsewhere."""
    languages = ALL_LANGUAGES if is_privacy_path(request.path) else SITE_LANGUAGES
    return {"picker_languages": [code for code, _ in languages]}


def operator_notices(request: HttpRequest) -> dict[str, bool]:
    """For staff only: whether the site runs nothing but the demo model (a note then says how to get a real one)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_staff:
        return {}  # no query for everyone else
    return {"demo_only": only_demo_model()}
