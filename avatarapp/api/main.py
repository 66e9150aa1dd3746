"""The v1 JSON API: routers, auth and the error shape for every failure."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from avatarapp.actions.errors import ActionError
from avatarapp.api import views_account, views_likeness, views_media
from avatarapp.api.auth import API_AUTH
from avatarapp.api.errors import error_response, validation_fields
from avatarapp.api.openapi import document_every_answer
from avatarapp.lib.refusals import refusal_for

log = logging.getLogger(__name__)


class ChhaviAPI(NinjaAPI):
    """ninja's API, whose schema also documents what the layers before the views answer (api/openapi.py)."""

    def get_openapi_schema(self, *, path_prefix: str | None = None,
                           path_params: dict[str, Any] | None = None) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        return document_every_answer(schema)


api = ChhaviAPI(
    title="Chhavi API",
    version="1",
    description="Turn a selfie into avatars and portraits. Errors are always "
    '{"error": {"code", "message"}} in the request\'s language.',
    auth=API_AUTH,
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url=None,
)
api.add_router("", views_account.router)
api.add_router("", views_media.router)
api.add_router("", views_likeness.router)


@api.exception_handler(ActionError)
def on_action_error(request: HttpRequest, exc: ActionError) -> JsonResponse:
    # Upload refusals also say why, for clients that want more than the sentence.
    extra = {"reason": exc.reason} if exc.reason else {}
    return error_response(exc.status, exc.code, exc.message, exc.fields, **extra)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> JsonResponse:
    return error_response(400, "invalid_fields", _("Please check the highlighted fields."),
                          fields=validation_fields(exc.errors))


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> JsonResponse:
    return error_response(401, "not_authenticated", _("Please sign in or start as a guest first."))


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> JsonResponse:
    # ninja raises these for unreadable bodies (malformed JSON, wrong content type).
    if exc.status_code == 400:
        return error_response(400, "malformed_request", _("The request could not be read."))
    return error_response(exc.status_code, "http_error", str(exc))


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> JsonResponse:
    # Bad input a view still met (a value the database refused, a body over Django's limits):
    # a 4xx, as the guard in front/middleware.py answers it before any view.
    refusal = refusal_for(exc)
    if refusal is not None:
        return refusal.json()
    log.exception("unhandled API error")
    return error_response(500, "server_error", _("Something went wrong on our side. Please try again."))
