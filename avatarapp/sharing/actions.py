"""Creating and revoking share links."""

from __future__ import annotations

from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from avatarapp.jobs.models import Output
from avatarapp.sharing.cards import card_key
from avatarapp.sharing.models import Share


def do_create_share(output: Output, language: str, expires_in: timedelta | None) -> Share:
    expires_at = timezone.now() + expires_in if expires_in else None
    return Share.objects.create(output=output, language=language, expires_at=expires_at)


def do_revoke_share(share: Share) -> None:
    output = share.output
    share.delete()
    # The card is the output's; with no live share left nobody may fetch it.
    if not output.shares.exists():
        default_storage.delete(card_key(output))
