"""Share links: creating one for a picture, and revoking it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User
from avatarapp.actions.errors import not_found
from avatarapp.actions.outputs import get_own_output
from avatarapp.lib.storage_keys import card_key
from avatarapp.sharing.models import Share


def do_create_share(user: User, output_id: uuid.UUID | str, language: str,
                    expires_in: timedelta | None = None) -> Share:
    output = get_own_output(user, output_id)
    expires_at = timezone.now() + expires_in if expires_in else None
    return Share.objects.create(output=output, language=language, expires_at=expires_at)


def do_share_once(user: User, output_id: uuid.UUID | str, language: str) -> Share:
    """The picture's newest share link, made now if it has none (the site's Share button)."""
    output = get_own_output(user, output_id)
    return output.shares.order_by("-created_at").first() or do_create_share(user, output.id, language)


def do_revoke_share(user: User, token: str) -> None:
    share = Share.objects.select_related("output").filter(token=token, output__user=user).first()
    if share is None:
        raise not_found(_("Share link not found."))
    output = share.output
    share.delete()
    # The card is the output's; with no live share left nobody may fetch it.
    if not output.shares.exists():
        default_storage.delete(card_key(output.user_id, output.id))
