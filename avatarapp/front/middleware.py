"""Site-wide middleware and context processors: one language per page, and the request guard."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext

from avatarapp.languages import ALL_LANGUAGES, NOTICE_ONLY_CODES, SITE_LANGUAGES, is_privacy_path
from avatarapp.lib.ratelimit import note_retry_after, retry_after
from avatarapp.lib.refusals import Refusal, is_api, refusal_for, refusal_for_request
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


class RequestGuardMiddleware:
    """Nothing a client sends gets a 500: bad input is a clear, localised 4xx, on every path.

    Placed after LocaleMiddleware (so refusals speak the request's language) and before
    CommonMiddleware, CSRF and the views, it

    - refuses, before any view runs, a request with invalid text anywhere (NUL, lone surrogates,
      bytes that are not UTF-8) or a body over Django's limits (lib/refusals.py says why one
      check here beats checking each field: no view, no row, no file, no queued message);
    - turns what a view still raises for bad input (a DataError, Django's SuspiciousOperation
      family) into the same 4xx (the API's own handler, api/main.py, does so inside ninja);
    - gives every 429 a ``Retry-After``: what the refusal noted (the rest of a rate limit's
      window; for the daily quota, when its oldest counted picture leaves the 24 hours);
    - shows the site's error page for a 405, keeping its ``Allow`` header.

    Under /api/ the answer is the JSON error shape; elsewhere the site's error page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        note_retry_after(None)  # a thread serves many requests: forget the last one's
        refusal = refusal_for_request(request)
        if refusal is not None:
            return refuse(request, refusal)
        response = self.get_response(request)
        if response.status_code == 429 and not response.has_header("Retry-After"):
            response["Retry-After"] = str(retry_after() or RETRY_AFTER_DEFAULT)
        if response.status_code == 405 and not is_api(request):
            allow = response.get("Allow", "")
            response = error_page(request, gettext("This method is not allowed here."), 405)
            response["Allow"] = allow
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        refusal = refusal_for(exception)
        return None if refusal is None else refuse(request, refusal)


def refuse(request: HttpRequest, refusal: Refusal) -> HttpResponseBase:
    return refusal.json() if is_api(request) else error_page(request, refusal.message, refusal.status)


def error_page(request: HttpRequest, message: str | Promise, status: int) -> HttpResponse:
    """The site's error page, also for a request refused before CSRF middleware saw it.

    The page's language form carries a CSRF token: it must match the visitor's cookie (or set
    one), which CsrfViewMiddleware arranges for the pages behind it.
    """
    csrf = CsrfViewMiddleware(lambda r: HttpResponse())
    csrf.process_request(request)
    response = render(request, "front/error.html", {"message": message}, status=status)
    csrf.process_response(request, response)  # sets the cookie on this same response if it must
    return response


# A 429 whose cause noted no wait of its own (none does today): ask again in a minute.
RETRY_AFTER_DEFAULT = 60
