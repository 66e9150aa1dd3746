"""Response headers every answer carries, beside Django's SecurityMiddleware and django-csp.

- ``Permissions-Policy`` from ``AVATAR_PERMISSIONS_POLICY`` (feature → allowed origins, an
  empty list for none): the pages use no camera, microphone, location and the like.
- ``Cache-Control: private, no-store`` on everything under ``/api/`` that did not choose its
  own: a user's JSON, photos and exports must not stay in a shared cache, nor on the phone.
  Public pages (share pages, previews, static files) keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

API_PREFIX = "/api/"
PRIVATE = "private, no-store"


def permissions_policy(policy: dict[str, list[str]]) -> str:
    """``{"camera": [], "web-share": ["self"]}`` → ``camera=(), web-share=(self)``."""
    return ", ".join(f"{feature}=({' '.join(origins)})" for feature, origins in policy.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.permissions_policy = permissions_policy(settings.AVATAR_PERMISSIONS_POLICY)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if self.permissions_policy:
            response.headers.setdefault("Permissions-Policy", self.permissions_policy)
        if request.path_info.startswith(API_PREFIX):
            response.headers.setdefault("Cache-Control", PRIVATE)
        return response
