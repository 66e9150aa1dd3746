"""One error shape for everything under /api/.

``{"error": {"code": "snake_case", "message": "in the request's language"}}``,
plus ``"fields"`` for validation errors. Never HTML, never a traceback: the
middleware below also catches Django's own 404s and any unexpected exception
under /api/. The shape itself is built in avatarapp/lib/refusals.py, which the
site-wide guard (front/middleware.py) uses too for requests refused before any view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.translation import gettext as _

from avatarapp.lib.refusals import API_PREFIX, error_response, refusal_for

__all__ = ["API_PREFIX", "ApiErrorMiddleware", "error_response", "field_message", "validation_fields"]

log = logging.getLogger(__name__)


# Messages for pydantic's error types, so validation errors speak the user's language.
def field_message(error: dict) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return _("This field is required.")
    if kind in ("greater_than_equal", "greater_than"):
        return _("Must be at least %(limit)s.") % {"limit": ctx.get("ge", ctx.get("gt"))}
    if kind in ("less_than_equal", "less_than"):
        return _("Must be at most %(limit)s.") % {"limit": ctx.get("le", ctx.get("lt"))}
    if kind.startswith("int") or kind.startswith("float"):
        return _("Must be a whole number.")
    if kind.startswith("uuid"):
        return _("Must be a valid id.")
    if kind.startswith("string") or kind == "str_type":
        return _("Must be text.")
    if kind.startswith("bool"):
        return _("Must be true or false.")
    return _("This value is not valid.")


# Where pydantic says a value came from, not part of the field's name.
_LOCATION_PARTS = ("body", "payload", "query", "path", "form", "file")


def validation_fields(errors: list[dict]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in _LOCATION_PARTS]
        name = ".".join(loc) or "body"
        fields.setdefault(name, field_message(error))
    return fields


class ApiErrorMiddleware:
    """JSON instead of Django's HTML 404/405/500 pages under /api/, and HEAD wherever GET works.

    A 405 keeps its ``Allow`` header (with HEAD beside GET). A HEAD request is answered by the
    GET view with the body left out, so every GET route answers HEAD without declaring it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        head = request.method == "HEAD"
        if head:
            request.method = "GET"
        try:
            response = self.get_response(request)
        finally:
            if head:
                request.method = "HEAD"
        if response.status_code in (404, 405) and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            allow = response.get("Allow")
            if response.status_code == 404:
                response = error_response(404, "not_found", _("Not found."))
            else:
                response = error_response(405, "method_not_allowed", _("This method is not allowed here."))
                if allow:
                    response["Allow"] = allow
        if response.status_code == 405:
            response["Allow"] = with_head(response.get("Allow", ""))
        return without_body(response) if head else response

    def process_exception(self, request: HttpRequest, exception: Exception) -> JsonResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        refusal = refusal_for(exception)
        if refusal is not None:
            return refusal.json()
        log.exception("unhandled error on %s", request.path)
        return error_response(500, "server_error", _("Something went wrong on our side. Please try again."))


def with_head(allow: str) -> str:
    """An Allow header's methods, with HEAD wherever GET is (this middleware answers it)."""
    methods = [m.strip() for m in allow.split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


def without_body(response: HttpResponseBase) -> HttpResponseBase:
    """The answer to HEAD: the GET response's status and headers (its length too), no body."""
    if isinstance(response, HttpResponse):
        response["Content-Length"] = str(len(response.content))
        response.content = b""
        return response
    # A streamed file: close it, keep what it would have said about itself.
    head = HttpResponse(status=response.status_code)
    for name, value in response.items():
        head[name] = value
    head.cookies = response.cookies
    response.close()
    return head
