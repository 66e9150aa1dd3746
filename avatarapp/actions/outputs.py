"""Generated pictures: looking one up for its owner, deleting it with everything that points at it,
and a moderator removing one."""

from __future__ import annotations

import logging
import uuid

from django.core.files.storage import default_storage
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError, not_found
from avatarapp.jobs.models import Output
from avatarapp.lib.storage_keys import card_key
from avatarapp.sharing.models import Report

log = logging.getLogger(__name__)

# A moderator is a staff user with this permission (or a superuser): see the admin's moderation queue.
MODERATE_PERMISSION = "jobs.moderate_output"


def get_own_output(user: User | None, output_id: uuid.UUID | str) -> Output:
    output = Output.objects.select_related("job__pack").filter(id=output_id, user=user).first()
    if output is None:
        raise not_found(_("Picture not found."))
    return output


def is_moderator(user: User | None) -> bool:
    return bool(user is not None and user.is_active and user.is_staff and user.has_perm(MODERATE_PERMISSION))


def require_moderator(user: User | None) -> None:
    if not is_moderator(user):
        raise ActionError("forbidden", 403, _("Only a moderator can do this."))


def delete_output(output: Output) -> None:
    """The row, its picture, thumbnail and share card. Its share links go with the row, so their
    public pages answer 404 from this moment on; the files go after the row."""
    keys = [output.storage_key, output.thumbnail_key, card_key(output.user_id, output.id)]
    output.delete()
    for key in keys:
        default_storage.delete(key)


def do_delete_output(user: User, output_id: uuid.UUID | str) -> None:
    """The owner deletes a picture, with everything that points at it."""
    delete_output(get_own_output(user, output_id))


def do_remove_output(moderator: User, output_id: uuid.UUID | str) -> bool:
    """A moderator removes a picture (flagged by the content check, or reported): its open reports are
    resolved, then it goes as its owner's delete would take it. False if it was already gone."""
    require_moderator(moderator)
    output = Output.objects.filter(id=output_id).first()
    if output is None:
        return False
    Report.objects.filter(output=output, resolved=False).update(resolved=True)
    delete_output(output)
    log.info("moderator %s removed output %s of user %s (flagged: %s)", moderator.pk, output_id, output.user_id,
             output.flag_reason or "no")
    return True
