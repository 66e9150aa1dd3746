"""Jobs: create (and enqueue) within the quota and the per-user cap, and cancel."""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError, invalid_fields, not_found, queue_unavailable
from avatarapp.actions.likeness import likeness_for_job
from avatarapp.actions.photos import get_own_photo, require_consent
from avatarapp.celery import GENERATE_TASK, app, generation_queue
from avatarapp.jobs.models import Job
from avatarapp.lib.ratelimit import note_retry_after
from avatarapp.packs.models import StylePack

log = logging.getLogger(__name__)


def quota_limit(user: User) -> int:
    return settings.AVATAR_GUEST_DAILY_QUOTA if user.is_guest else settings.AVATAR_DAILY_QUOTA


QUOTA_WINDOW = timedelta(hours=24)


def counted_jobs(user: User, now: datetime) -> QuerySet[Job]:
    """The jobs the daily quota counts: asked for in the last 24 hours, not failed or cancelled."""
    return Job.objects.filter(user=user, created_at__gte=now - QUOTA_WINDOW).exclude(
        status__in=[Job.Status.FAILED, Job.Status.CANCELED])


def quota_used(user: User) -> int:
    """Images asked for in the last 24 hours; failed and cancelled jobs do not count."""
    return counted_jobs(user, timezone.now()).aggregate(n=Sum("count"))["n"] or 0


def quota_retry_after(user: User) -> int:
    """Seconds until the oldest counted job leaves the window (a whole day for a quota of 0)."""
    now = timezone.now()
    oldest = counted_jobs(user, now).order_by("created_at").values_list("created_at", flat=True).first()
    if oldest is None:
        return int(QUOTA_WINDOW.total_seconds())
    return max(1, math.ceil((oldest + QUOTA_WINDOW - now).total_seconds()))


# What a 429 too_many_jobs asks to wait: about one picture's time on a GPU, after which a job
# of the user's has likely finished and freed a place (an estimate would cost a query per refusal).
TOO_MANY_JOBS_RETRY_AFTER = 30


def active_jobs(user: User) -> int:
    """The user's jobs waiting or being made: what AVATAR_MAX_ACTIVE_JOBS caps."""
    return Job.objects.filter(user=user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()


def get_own_job(user: User, job_id: uuid.UUID | str) -> Job:
    job = Job.objects.select_related("pack").filter(id=job_id, user=user).first()
    if job is None:
        raise not_found(_("Job not found."))
    return job


def available_pack(slug: str) -> StylePack:
    pack = StylePack.objects.offered().filter(slug=slug).first()
    if pack is None:
        # Unknown, disabled, or made for a model family no warm worker runs: refused now, in the
        # person's language, rather than queued to fail later.
        exists = StylePack.objects.filter(slug=slug, enabled=True).exists()
        raise ActionError("pack_unavailable" if exists else "unknown_pack", 400, _("This style is not available."),
                          fields={"pack": _("Choose one of the available styles.")})
    return pack


def enqueue(job: Job) -> None:
    """Send the job's id to the queue of the workers that run its pack's model family."""
    app.send_task(GENERATE_TASK, args=[str(job.id)], queue=generation_queue(job.pack.base_family))
    Job.objects.filter(id=job.id).update(enqueued_at=timezone.now())


def messages_waiting(family: str) -> int | None:
    """How many messages wait on `family`'s generation queue, or None when the broker cannot say."""
    try:
        with app.connection_for_write() as conn:
            conn.connect()  # one try: a broker that is down answers None instead of a wait
            return conn.default_channel.queue_declare(generation_queue(family), durable=True).message_count
    except Exception as e:  # noqa: BLE001  (any transport's error: the caller falls back to waiting)
        log.warning("could not count the messages on %s: %s", generation_queue(family), e)
        return None


def do_create_job(user: User, photo_id: uuid.UUID | str, pack_slug: str, count: int = 1,
                  seed: int | None = None, preview: bool = False, likeness: bool = False) -> Job:
    """Create a queued job and hand its id to the broker, or refuse and leave nothing behind.

    With `likeness`, the person's likeness model ("me") is applied beside the pack's LoRA.
    """
    require_consent(user)
    pack = available_pack(pack_slug)
    if preview and pack.spec.fast is None:
        raise invalid_fields({"preview": _("This style has no quick preview.")})
    likeness_run = likeness_for_job(user, pack.base_family) if likeness else None
    photo = get_own_photo(user, photo_id)
    with transaction.atomic():
        # Lock the user's row so two requests at once cannot both pass the quota.
        User.objects.select_for_update().filter(pk=user.pk).first()
        if quota_used(user) + count > quota_limit(user):
            note_retry_after(quota_retry_after(user))  # the 429's Retry-After (front/middleware.py)
            raise ActionError("quota_exceeded", 429,
                              _("You have made as many pictures as you can for today. Please come back tomorrow."))
        # One person's backlog must not fill the queue: a cap on jobs waiting or being made.
        if active_jobs(user) >= settings.AVATAR_MAX_ACTIVE_JOBS:
            note_retry_after(TOO_MANY_JOBS_RETRY_AFTER)
            raise ActionError("too_many_jobs", 429,
                              _("You already have as many pictures on the way as you can. "
                                "Please wait until one is ready, then try again."))
        job = Job.objects.create(
            user=user,
            photo=photo,
            pack=pack,
            count=count,
            preview=preview,
            with_likeness=likeness_run is not None,
            likeness=likeness_run,
            likeness_weight=settings.AVATAR_LIKENESS_WEIGHT,
            seed=seed if seed is not None else secrets.randbelow(2**32),
        )
    try:
        enqueue(job)
    except Exception:
        log.exception("could not enqueue job %s", job.id)
        job.delete()
        raise queue_unavailable() from None
    return job


def do_cancel_job(user: User, job_id: uuid.UUID | str) -> Job:
    """Ask for a job to stop. A queued job stops at once, a running one between steps."""
    job = get_own_job(user, job_id)
    updated = Job.objects.filter(id=job.id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.CANCELED, finished_at=timezone.now()
    )
    if not updated:
        raise ActionError("already_finished", 409, _("This job has already finished."))
    job.refresh_from_db()
    return job
