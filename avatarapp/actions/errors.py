"""The typed refusal every action raises: (code, status, localised message)."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class ActionError(Exception):
    """A request the service refuses, and how each door should say so.

    `code` is the API's snake_case error code, `status` its HTTP status, `message`
    a (lazily) translated sentence for the person, `fields` per-field messages for
    a form or a validation error.
    """

    def __init__(self, code: str, status: int, message: str | Promise,
                 fields: dict[str, str | Promise] | None = None, reason: str = "") -> None:
        super().__init__(str(message))
        self.code = code
        self.status = status
        self.message = message
        self.fields = fields
        # Why a photo was refused, finer than the code (for clients and operators).
        self.reason = reason


NOT_FOUND = _("Not found.")


def not_found(message: str | Promise = NOT_FOUND) -> ActionError:
    return ActionError("not_found", 404, message)


def invalid_fields(fields: dict[str, str | Promise]) -> ActionError:
    return ActionError("invalid_fields", 400, _("Please check the highlighted fields."), fields=fields)


def queue_unavailable() -> ActionError:
    """The broker refused a message: the row that needed it has been deleted, nothing is left."""
    return ActionError("queue_unavailable", 503,
                       _("We cannot take new pictures right now. Please try again in a minute."))
