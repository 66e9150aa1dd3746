"""Generated pictures: looking one up for its owner, and deleting it with everything that points at it."""

from __future__ import annotations

import uuid

from django.core.files.storage import default_storage
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User
from avatarapp.actions.errors import not_found
from avatarapp.jobs.models import Output
from avatarapp.lib.storage_keys import card_key


def get_own_output(user: User | None, output_id: uuid.UUID | str) -> Output:
    output = Output.objects.select_related("job__pack").filter(id=output_id, user=user).first()
    if output is None:
        raise not_found(_("Picture not found."))
    return output


def do_delete_output(user: User, output_id: uuid.UUID | str) -> None:
    """The row, its picture, thumbnail and share card; its share links go with the row."""
    output = get_own_output(user, output_id)
    keys = [output.storage_key, output.thumbnail_key, card_key(output.user_id, output.id)]
    output.delete()
    for key in keys:
        default_storage.delete(key)
