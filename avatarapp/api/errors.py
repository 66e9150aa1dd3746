"""One error shape for everything under /api/.

``{"error": {"code": "snake_case", "message": "in the request's language"}}``,
plus ``"fields"`` for validation errors. Never HTML, never a traceback: the
middleware below also catches Django's own 404s and any unexpected exception
under /api/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import Promise
from django.utils.translation import gettext as _

log = logging.getLogger(__name__)

API_PREFIX = "/api/"


def error_response(status: int, code: str, message: str | Promise, fields: dict | None = None,
                   **extra: Any) -> JsonResponse:
    body: dict = {"code": code, "message": str(message)}
    if fields:
        body["fields"] = {k: str(v) for k, v in fields.items()}
    body.update(extra)
    return JsonResponse({"error": body}, status=status)


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
    """JSON instead of Django's HTML 404/405/500 pages under /api/."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(API_PREFIX) and response.status_code in (404, 405) and not response.get(
            "Content-Type", ""
        ).startswith("application/json"):
            if response.status_code == 404:
                return error_response(404, "not_found", _("Not found."))
            return error_response(405, "method_not_allowed", _("This method is not allowed here."))
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> JsonResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        log.exception("unhandled error on %s", request.path)
        return error_response(500, "server_error", _("Something went wrong on our side. Please try again."))
