"""Serve a stored file to someone already checked to be allowed to see it."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse

from avatarapp.actions.errors import not_found


def serve_private_file(key: str, content_type: str) -> FileResponse:
    try:
        # S3 opens lazily and would fail mid-response; ask first so a gone file is a clean 404.
        if not default_storage.exists(key):
            raise not_found()
        handle = default_storage.open(key, "rb")
    except (FileNotFoundError, OSError):
        raise not_found() from None
    response = FileResponse(handle, content_type=content_type)
    # Private to this user: no cache may keep it, shared or on the phone (it may be erased any time).
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
