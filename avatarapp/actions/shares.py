"""Share links: creating one for a picture, revoking it, and a moderator taking one down or dismissing
the reports against it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError, not_found
from avatarapp.actions.outputs import get_own_output, require_moderator
from avatarapp.jobs.models import Output
from avatarapp.lib.storage_keys import card_key
from avatarapp.sharing.models import Report, Share

log = logging.getLogger(__name__)


def refuse_flagged(output: Output) -> None:
    """A picture the content safety check held back is never shared."""
    if output.flagged:
        raise ActionError("output_flagged", 400,
                          _("Our content check held this picture back, so it cannot be shared."))


def do_create_share(user: User, output_id: uuid.UUID | str, language: str,
                    expires_in: timedelta | None = None) -> Share:
    output = get_own_output(user, output_id)
    refuse_flagged(output)
    expires_at = timezone.now() + expires_in if expires_in else None
    return Share.objects.create(output=output, language=language, expires_at=expires_at)


def do_share_once(user: User, output_id: uuid.UUID | str, language: str) -> Share:
    """The picture's newest share link, made now if it has none (the site's Share button)."""
    output = get_own_output(user, output_id)
    refuse_flagged(output)
    return output.shares.order_by("-created_at").first() or do_create_share(user, output.id, language)


def take_down(share: Share) -> None:
    """The link goes at once (every public request looks the token up again); the output's card goes
    too once no link to it is left."""
    output = share.output
    share.delete()
    if not output.shares.exists():
        default_storage.delete(card_key(output.user_id, output.id))


def do_revoke_share(user: User, token: str) -> None:
    share = Share.objects.select_related("output").filter(token=token, output__user=user).first()
    if share is None:
        raise not_found(_("Share link not found."))
    take_down(share)


def do_take_down_share(moderator: User, token: str) -> bool:
    """A moderator takes a share link down (the picture stays with its owner); the reports against the
    link are resolved. False if the link was already gone."""
    require_moderator(moderator)
    Report.objects.filter(share_token=token, resolved=False).update(resolved=True)
    share = Share.objects.select_related("output").filter(token=token).first()
    if share is None:
        return False
    take_down(share)
    log.info("moderator %s took down share %s… of output %s", moderator.pk, token[:6], share.output_id)
    return True


def do_dismiss_reports(moderator: User, report_ids: Iterable[int]) -> int:
    """A moderator finds nothing wrong: the reports are resolved, the picture and its links stay."""
    require_moderator(moderator)
    dismissed = Report.objects.filter(id__in=list(report_ids), resolved=False).update(resolved=True)
    log.info("moderator %s dismissed %d report(s)", moderator.pk, dismissed)
    return dismissed
