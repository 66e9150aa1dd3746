"""What a request gets when it cannot be served, and which requests no view should ever see.

The API's error shape lives here, ``{"error": {"code", "message"}}`` (api/errors.py and the
site's guard, front/middleware.py, both answer with it), beside the one check every request
passes before any view runs:

- **Invalid text is refused up front, in one place.** The path, the query string, the cookies
  and the body (form fields, multipart fields and file names, JSON strings and keys) must be
  UTF-8 text without NUL and without lone surrogates, or the request is a 400 ``invalid_input``.
  PostgreSQL refuses NUL in text (a DataError, that is a 500 in the middle of a view, perhaps
  after a rate-limit count or a file was written); SQLite stores it; a cache key or a log line
  with it breaks elsewhere. Checking each field where it is used would miss the next field;
  checking the request once, before the view, misses none and leaves nothing half-written.
  Django decodes form and query values with replacement characters, so their raw bytes are
  checked; multipart fields arrive already decoded (with U+FFFD for bytes that were not UTF-8),
  so in a multipart field U+FFFD counts as invalid text too (not in a file's name, which phones
  write in many encodings and which is never kept).
- **Bodies are read here, so their limits answer here**: over DATA_UPLOAD_MAX_MEMORY_SIZE is
  413 ``too_large``, more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields 413 ``too_many_fields``,
  more than DATA_UPLOAD_MAX_NUMBER_FILES files 413 ``too_many_files``, multipart without a
  boundary (or otherwise unreadable) 400 ``malformed_request``. Django would raise these from
  whichever view first touched ``request.POST`` (a 500 inside the API, a bare page on the site).
- **A safety net behind both**: ``refusal_for`` turns a DataError (text the database refuses,
  a number out of its range) and Django's SuspiciousOperation family into the same 4xx, should
  a view still meet one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DataError
from django.http import HttpRequest, JsonResponse, RawPostDataException, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# Methods whose body Django would read; a GET's body is never parsed, so never checked.
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")

INVALID_INPUT = _("The request contains characters we cannot read. Please check what you typed and try again.")
MALFORMED = _("The request could not be read.")
TOO_LARGE = _("The request is too large. Please send less at once.")
TOO_MANY_FIELDS = _("The request has too many fields.")
TOO_MANY_FILES = _("The request has too many files. Please send one photo at a time.")
BAD_HOST = _("This site does not answer to that address.")
# A form or script request whose CSRF token is missing or stale (api/auth.py, front/views.py).
CSRF_FAILED = _("We could not verify this request. Please reload the page and try again.")


def error_response(status: int, code: str, message: str | Promise, fields: dict | None = None,
                   **extra: Any) -> JsonResponse:
    """The API's one error shape (DESIGN.md): code, message in the request's language, maybe fields."""
    body: dict = {"code": code, "message": str(message)}
    if fields:
        body["fields"] = {k: str(v) for k, v in fields.items()}
    body.update(extra)
    return JsonResponse({"error": body}, status=status)


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str | Promise

    def json(self) -> JsonResponse:
        return error_response(self.status, self.code, self.message)


INVALID = Refusal(400, "invalid_input", INVALID_INPUT)


def refusal_for(exc: BaseException) -> Refusal | None:
    """The 4xx for an exception that bad input causes, or None for a real fault (a 500)."""
    if isinstance(exc, RequestDataTooBig):
        refusal = Refusal(413, "too_large", TOO_LARGE)
    elif isinstance(exc, TooManyFieldsSent):
        refusal = Refusal(413, "too_many_fields", TOO_MANY_FIELDS)
    elif isinstance(exc, TooManyFilesSent):
        refusal = Refusal(413, "too_many_files", TOO_MANY_FILES)
    elif isinstance(exc, DisallowedHost):
        refusal = Refusal(400, "bad_host", BAD_HOST)
    elif isinstance(exc, (SuspiciousOperation, MultiPartParserError, UnreadablePostError)):
        refusal = Refusal(400, "malformed_request", MALFORMED)
    elif isinstance(exc, RawPostDataException):
        # A multipart body (read as form data by the guard) sent where a JSON body was expected.
        refusal = Refusal(400, "malformed_request", MALFORMED)
    elif isinstance(exc, DataError):
        # Something the guard below let through and the database would not store: worth a look.
        log.warning("database refused a value: %s", exc)
        return INVALID
    else:
        return None
    log.info("refused a request: %s: %s", type(exc).__name__, exc)
    return refusal


# --- Invalid text -----------------------------------------------------------------


def is_bad_text(value: str) -> bool:
    """NUL, or a lone surrogate (text no UTF-8 encoder, and no database, accepts)."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def is_bad_bytes(raw: bytes, encoding: str = "utf-8") -> bool:
    """NUL, or bytes that are not text in `encoding` (strictly: no replacement characters)."""
    if b"\x00" in raw:
        return True
    try:
        raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return True
    return False


def wsgi_bytes(value: str) -> bytes:
    """The raw bytes behind a WSGI environ string (PEP 3333 carries them as latin-1)."""
    try:
        return value.encode("iso-8859-1")
    except UnicodeEncodeError:  # ASGI hands over text already decoded
        return value.encode("utf-8", "surrogatepass")


def is_bad_path(path: str) -> bool:
    """NUL or a lone surrogate in the path, or bytes in it that were not UTF-8.

    Django hands views the path with such bytes put back as %-escapes (/s/%FF), so they show as
    escapes that do not decode; none of this site's paths holds a literal "%" to confuse with them.
    """
    return is_bad_text(path) or ("%" in path and is_bad_bytes(unquote_to_bytes(path)))


def is_bad_query(raw: bytes, encoding: str = "utf-8") -> bool:
    """Any name or value of an urlencoded string that is not text once its %-escapes are undone."""
    for pair in raw.split(b"&"):
        for part in pair.split(b"=", 1):
            if is_bad_bytes(unquote_to_bytes(part.replace(b"+", b" ")), encoding):
                return True
    return False


def has_bad_json_text(data: Any) -> bool:
    """A NUL or lone surrogate in any string or key of parsed JSON (walked without recursion)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if is_bad_text(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def bad_body(request: HttpRequest) -> Refusal | None:
    """Read the body the way the view will, and refuse what it must not get.

    Raises what Django raises for bodies over its limits (see refusal_for).
    """
    content_type = request.content_type or ""
    encoding = request.encoding or "utf-8"
    if content_type == "multipart/form-data":
        # Parsed here once (files go to memory or a temporary file, never MEDIA_ROOT); the view reuses it.
        post, files = request.POST, request.FILES
        for name, values in post.lists():
            if any(is_bad_text(text) or "\ufffd" in text for text in (name, *values)):
                return INVALID
        for name, uploads in files.lists():
            if is_bad_text(name) or any(is_bad_text(upload.name or "") for upload in uploads):
                return INVALID
        return None
    if content_type == "application/x-www-form-urlencoded":
        request.POST  # noqa: B018 - parsed first: it counts the fields (TooManyFieldsSent)
        return INVALID if is_bad_query(request.body, encoding) else None
    body = request.body
    if not body:
        return None
    if is_bad_bytes(body):
        # JSON is UTF-8 (RFC 8259); nothing else here takes a raw body.
        return INVALID
    try:
        data = json.loads(body)
    except RecursionError:
        return Refusal(400, "malformed_request", MALFORMED)
    except ValueError:
        return None  # not JSON: the view says what it expected
    return INVALID if has_bad_json_text(data) else None


def refusal_for_request(request: HttpRequest) -> Refusal | None:
    """The refusal for a request no view should see, or None to let it through.

    Cheap for what most requests are (a GET with a short path): three string checks.
    """
    try:
        request.get_host()
        if is_bad_path(request.path_info):
            return INVALID
        request.GET  # noqa: B018 - parsed first: it counts the fields (TooManyFieldsSent)
        if is_bad_query(wsgi_bytes(request.META.get("QUERY_STRING", ""))):
            return INVALID
        if any(is_bad_text(name) or is_bad_text(value) for name, value in request.COOKIES.items()):
            return INVALID
        if request.method in BODY_METHODS:
            return bad_body(request)
    except Exception as exc:  # noqa: BLE001 - only what refusal_for knows is answered here
        refusal = refusal_for(exc)
        if refusal is None:
            raise
        return refusal
    return None
