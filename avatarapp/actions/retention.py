"""Retention that deletes: expired photos, expired share links and their cards, orphan files.

Run by the beat schedule (`worker.tasks.sweep_retention`); each sweep is idempotent, so
two at once or one cut short do no harm. What the consent text promises
(accounts/consent.py) is what these functions do, with the same settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from avatarapp.accounts.models import ApiToken
from avatarapp.actions.photos import delete_photos
from avatarapp.jobs.models import Job, Output
from avatarapp.lib.storage import keys_under, remove_empty_folders
from avatarapp.lib.storage_keys import USERS_ROOT, card_key
from avatarapp.photos.models import Photo
from avatarapp.sharing.models import Share
from avatarapp.training.models import TrainingRun

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    photos: int = 0
    shares: int = 0
    cards: int = 0
    orphans: int = 0
    tokens: int = 0


def sweep_expired_photos(now: datetime) -> int:
    """Photos past their expiry, except those a queued or running job still needs (kept until it ends)."""
    in_use = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).values("photo_id")
    # Likewise the selfies a likeness model is being trained on (until its training ends).
    training = [sample["photo"] for samples in TrainingRun.objects.filter(
        kind=TrainingRun.Kind.LIKENESS, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).values_list("samples", flat=True) for sample in samples if "photo" in sample]
    return delete_photos(Photo.objects.filter(expires_at__lte=now).exclude(id__in=in_use).exclude(id__in=training))


def sweep_expired_shares(now: datetime) -> tuple[int, int]:
    """Expired share links go, and so does each card no live link needs any more."""
    expired = Share.objects.filter(expires_at__lte=now)
    output_ids = set(expired.values_list("output_id", flat=True))
    count, _ = expired.delete()
    live = Share.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), output_id=OuterRef("id"))
    unshared = Output.objects.filter(id__in=output_ids).exclude(Exists(live)).values_list("user_id", "id")
    cards = 0
    for user_id, output_id in unshared:
        key = card_key(user_id, output_id)
        if default_storage.exists(key):
            default_storage.delete(key)
            cards += 1
    return count, cards


def sweep_idle_tokens(now: datetime) -> int:
    """API tokens unused for AVATAR_TOKEN_IDLE_DAYS no longer work (accounts/tokens.py): their rows go too,
    so a leaked database holds no stale credentials' hashes and no record of old sign-ins."""
    count, _ = ApiToken.objects.filter(last_used_at__lt=now - timedelta(days=settings.AVATAR_TOKEN_IDLE_DAYS)).delete()
    return count


def owned_keys() -> set[str]:
    """Every storage key some row still stands behind."""
    keys = set(Photo.objects.values_list("storage_key", flat=True))
    # Every output's share card too: the worker makes it with the picture, shared or not yet.
    for key, thumbnail, user_id, output_id in Output.objects.values_list("storage_key", "thumbnail_key",
                                                                         "user_id", "id"):
        keys.update((key, thumbnail, card_key(user_id, output_id)))
    # Likeness models: the LoRA of each one trained.
    keys.update(TrainingRun.objects.exclude(lora_key="").values_list("lora_key", flat=True))
    return keys


def sweep_orphan_files(now: datetime, grace: timedelta) -> int:
    """Files under users/ that no row owns (a crash, a race with an erasure), once older than `grace`.

    The grace period spares a file written a moment before its row (an upload in flight,
    a picture being stored).
    """
    owned = owned_keys()
    deleted = 0
    for key in keys_under(USERS_ROOT):
        if key in owned:
            continue
        try:
            if default_storage.get_modified_time(key) > now - grace:
                continue
        except (FileNotFoundError, OSError):
            continue  # gone since it was listed
        default_storage.delete(key)
        deleted += 1
    remove_empty_folders(USERS_ROOT, default_storage, keep_root=True)
    return deleted


def sweep(now: datetime | None = None) -> SweepReport:
    now = now or timezone.now()
    report = SweepReport()
    report.photos = sweep_expired_photos(now)
    report.shares, report.cards = sweep_expired_shares(now)
    report.orphans = sweep_orphan_files(now, timedelta(minutes=settings.AVATAR_ORPHAN_GRACE_MINUTES))
    report.tokens = sweep_idle_tokens(now)
    log.info("retention sweep: %s", report)
    return report
