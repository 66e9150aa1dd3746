"""Actions on jobs: create (and enqueue), cancel, and the quota behind them."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from avatarapp.accounts.models import User
from avatarapp.celery import GENERATE_TASK, app
from avatarapp.jobs.models import Job
from avatarapp.packs.models import StylePack
from avatarapp.photos.models import Photo

log = logging.getLogger(__name__)


class QuotaExceeded(Exception):
    pass


class QueueUnavailable(Exception):
    pass


class JobNotCancellable(Exception):
    pass


def quota_limit(user: User) -> int:
    return settings.AVATAR_GUEST_DAILY_QUOTA if user.is_guest else settings.AVATAR_DAILY_QUOTA


def quota_used(user: User) -> int:
    """Images asked for in the last 24 hours; failed and cancelled jobs do not count."""
    since = timezone.now() - timedelta(hours=24)
    used = (
        Job.objects.filter(user=user, created_at__gte=since)
        .exclude(status__in=[Job.Status.FAILED, Job.Status.CANCELED])
        .aggregate(n=Sum("count"))["n"]
    )
    return used or 0


def enqueue(job: Job) -> None:
    app.send_task(GENERATE_TASK, args=[str(job.id)])
    Job.objects.filter(id=job.id).update(enqueued_at=timezone.now())


def do_create_job(user: User, photo: Photo, pack: StylePack, count: int, seed: int | None,
                  preview: bool = False) -> Job:
    """Create a queued job and hand its id to the broker, or leave nothing behind."""
    with transaction.atomic():
        # Lock the user's row so two requests at once cannot both pass the quota.
        User.objects.select_for_update().filter(pk=user.pk).first()
        if quota_used(user) + count > quota_limit(user):
            raise QuotaExceeded()
        job = Job.objects.create(
            user=user,
            photo=photo,
            pack=pack,
            count=count,
            preview=preview,
            seed=seed if seed is not None else secrets.randbelow(2**32),
        )
    try:
        enqueue(job)
    except Exception:
        log.exception("could not enqueue job %s", job.id)
        job.delete()
        raise QueueUnavailable() from None
    return job


def do_cancel_job(job: Job) -> Job:
    """Ask for a job to stop. A queued job stops at once, a running one between steps."""
    updated = Job.objects.filter(id=job.id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.CANCELED, finished_at=timezone.now()
    )
    if not updated:
        raise JobNotCancellable()
    job.refresh_from_db()
    return job
