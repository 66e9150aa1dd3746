"""The OpenAPI schema documents every answer the server gives, not only each view's own.

Views declare what is theirs (a 404 for a photo that is not yours, a 409 for a finished job, the
picture a private image URL serves). What every request can meet comes from the layers in front of
the views, so it is added here, in one place, to every operation of the generated schema:

- **400** on every operation: the request guard (lib/refusals.py) refuses invalid text anywhere in
  a request (``invalid_input``) and unreadable bodies (``malformed_request``), and ninja refuses a
  path, query or body that does not fit the schema (``invalid_fields``) before any view runs;
- **413** on every operation: a body, or a query string, over Django's limits (``too_large``,
  ``too_many_fields``, ``too_many_files``);
- **401** ``not_authenticated`` on every operation that requires credentials (a missing, malformed,
  expired or revoked token), and **403** ``csrf_failed`` on its unsafe methods (a signed-in
  session's request without the CSRF token);
- a ``Retry-After`` header (seconds) on every 429;
- **HEAD** beside every GET: ApiErrorMiddleware answers it with the GET's status and headers.

The shared error shape is ``ErrorBody``; ``error.fields`` and ``error.reason`` are optional.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import Any

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
JSON_ERROR = {"application/json": {"schema": ERROR_BODY}}
UNSAFE_METHODS = ("post", "put", "patch", "delete")

COMMON_ERRORS = {
    "400": "Refused: text the server cannot read (`invalid_input`), a body it cannot parse "
           "(`malformed_request`), a value that does not fit (`invalid_fields`, with `fields`), "
           "or a rule of this operation (its own `code`).",
    "413": "Too large: the body (`too_large`), or too many fields (`too_many_fields`) or files "
           "(`too_many_files`).",
}
NOT_AUTHENTICATED = "`not_authenticated`: no token, or a malformed, expired or revoked one."
CSRF_FAILED = "`csrf_failed`: a signed-in session's request without its CSRF token."
OWN_REFUSAL = " Or this operation's own refusal (its `code`, e.g. `consent_required`)."
RETRY_AFTER = {
    "description": "Seconds to wait before asking again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
TOO_MANY = "Too many requests (`rate_limited`, `quota_exceeded`, `too_many_jobs`): see `Retry-After`."


def binary_response(*media_types: str, description: str) -> dict[int, dict[str, Any]]:
    """A 200 whose body is a file (a picture, an archive), for a route's ``openapi_extra``."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": {media: dict(binary) for media in media_types}}}


def private_image(*media_types: str) -> dict[str, Any]:
    """``openapi_extra`` of a private image URL (auth.IMAGE_AUTH).

    The owner gets the picture; anyone else, signed in or not, a 404, never a 401 (DESIGN.md: a
    stranger must not learn that the picture exists). So credentials are optional here: the empty
    requirement (ninja appends it to the route's own) says a request without them is answered too.
    """
    return {
        "responses": binary_response(*media_types, description="The picture, to its owner only."),
        "security": [{}],
    }


def document_every_answer(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the answers every operation can get (module docstring) to a generated schema, in place."""
    for item in schema.get("paths", {}).values():
        for method, operation in list(item.items()):
            if isinstance(operation, dict) and "responses" in operation:
                add_common_answers(method, operation)
        if "get" in item and "head" not in item:
            item["head"] = head_of(item["get"])
    return schema


def add_common_answers(method: str, operation: dict[str, Any]) -> None:
    responses = {str(status): answer for status, answer in operation["responses"].items()}
    answers = dict(COMMON_ERRORS)
    security = operation.get("security") or []
    if security and {} not in security:
        answers["401"] = NOT_AUTHENTICATED
        if method in UNSAFE_METHODS and any("ActiveSessionAuth" in requirement for requirement in security):
            answers["403"] = CSRF_FAILED
    if "429" in responses:
        answers["429"] = TOO_MANY
        responses["429"].setdefault("headers", {})["Retry-After"] = dict(RETRY_AFTER)
    for status, description in answers.items():
        declared = status in responses
        answer = responses.setdefault(status, {"content": copy.deepcopy(JSON_ERROR)})
        # ninja's bare "Forbidden" gives way to what it means; words a view chose stay.
        if answer.get("description", HTTPStatus(int(status)).phrase) == HTTPStatus(int(status)).phrase:
            answer["description"] = description + (OWN_REFUSAL if declared and status == "403" else "")
    operation["responses"] = dict(sorted(responses.items()))


def head_of(get: dict[str, Any]) -> dict[str, Any]:
    """The HEAD operation beside a GET: the same answers (statuses and headers), never a body."""
    head = copy.deepcopy(get)
    if "operationId" in head:
        head["operationId"] += "_head"
    head["summary"] = f"{get.get('summary', '')} (headers only)".strip()
    head["description"] = "The GET's status and headers, without its body."
    return head
