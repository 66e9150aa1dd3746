"""Recover jobs whose worker died or whose message the broker lost.

Runs every AVATAR_REAPER_INTERVAL seconds from celery beat, and works oldest job first
throughout, so the jobs that have waited longest get their messages back first.

- A running job whose heartbeat is older than AVATAR_HEARTBEAT_TIMEOUT lost its worker
  (SIGKILL, out-of-memory kill, a machine gone): it goes back to the queue, or fails with
  `worker_lost` once it has used AVATAR_MAX_ATTEMPTS attempts, so a job that crashes its
  worker every time cannot crash them forever.
- Lost messages, found at once. A worker claims the fairest queued job of its model family
  whichever message it receives (worker/run_job.py claim_batch), so any message on a family's
  queue is as good as any other, and the count is what matters: a family whose queue holds
  fewer messages than it has queued jobs (those whose message was sent more than
  LOST_MESSAGE_GRACE seconds ago, so one being handed to a worker right now is not counted as
  lost) has lost the difference. That is what a Redis without persistence does on a restart,
  and the reaper's next run after the broker is back re-sends that many, for the oldest jobs.
  A message a worker holds while running its batch has already claimed its job, so it is no
  message missing; one just handed to a worker that has not yet claimed may be counted as lost
  once, and its duplicate is harmless.
- As before, and as a backstop for brokers that cannot count their queues: a queued job whose
  message was sent more than AVATAR_REQUEUE_AFTER seconds ago is sent again.

A duplicate message is always harmless: claiming is conditional, and a message finding no
queued job does nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from avatarapp.actions.jobs import enqueue, messages_waiting
from avatarapp.jobs.models import Job
from avatarapp.training.recovery import recover_training_runs

log = logging.getLogger(__name__)

# Seconds after a message is sent before the reaper may count it as lost (at most AVATAR_REQUEUE_AFTER).
LOST_MESSAGE_GRACE = 10
# Messages re-sent by one run of each rule, at most.
RESEND_LIMIT = 500


def reap_stale_jobs() -> dict:
    now = timezone.now()
    requeued, failed = requeue_lost_workers(now)
    resent = resend_lost_messages(now)
    resent += resend_old_messages(now)
    # Training chunks whose worker died, or whose message was lost: the same rules (avatarapp/training/recovery.py).
    return {"requeued": requeued, "failed": failed, "resent": resent, **recover_training_runs(now)}


def requeue_lost_workers(now: datetime) -> tuple[int, int]:
    """Running jobs whose heartbeat stopped: back to the queue (oldest first), or failed after
    AVATAR_MAX_ATTEMPTS. Returns (requeued, failed)."""
    stale_before = now - timedelta(seconds=settings.AVATAR_HEARTBEAT_TIMEOUT)
    requeued = failed = 0
    stale = Job.objects.select_related("pack").filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale_before)
    for job in stale.order_by("created_at"):
        still_stale = Job.objects.filter(id=job.id, status=Job.Status.RUNNING, heartbeat_at__lt=stale_before)
        if job.attempts >= settings.AVATAR_MAX_ATTEMPTS:
            failed += still_stale.update(
                status=Job.Status.FAILED, error_code="worker_lost", finished_at=now,
                error_message=f"the worker stopped answering {job.attempts} times",
            )
        elif still_stale.update(status=Job.Status.QUEUED, progress=0.0, heartbeat_at=None, worker=""):
            log.warning("job %s lost its worker; queued again (attempt %d done)", job.id, job.attempts)
            enqueue(job)
            requeued += 1
    return requeued, failed


def resend_lost_messages(now: datetime) -> int:
    """Per model family, as many messages as its queue is short of its queued jobs, for the oldest."""
    grace = min(LOST_MESSAGE_GRACE, settings.AVATAR_REQUEUE_AFTER)
    # A job whose message is not sent yet (enqueued_at unset) is on its way, not lost.
    waiting = Job.objects.filter(status=Job.Status.QUEUED, enqueued_at__lt=now - timedelta(seconds=grace))
    resent = 0
    for family in waiting.order_by("pack__base_family").values_list("pack__base_family", flat=True).distinct():
        of_family = waiting.filter(pack__base_family=family)
        held = messages_waiting(family)
        if held is None:
            continue  # the broker cannot say (or is still down): AVATAR_REQUEUE_AFTER will do
        missing = of_family.count() - held
        if missing <= 0:
            continue
        log.warning("the %s queue holds %d messages for more queued jobs: %d re-sent", family, held, missing)
        for job in of_family.select_related("pack").order_by("created_at")[:min(missing, RESEND_LIMIT)]:
            enqueue(job)
            resent += 1
    return resent


def resend_old_messages(now: datetime) -> int:
    """Queued jobs whose message was sent more than AVATAR_REQUEUE_AFTER seconds ago, oldest first."""
    resend_before = now - timedelta(seconds=settings.AVATAR_REQUEUE_AFTER)
    resent = 0
    old = Job.objects.select_related("pack").filter(status=Job.Status.QUEUED, enqueued_at__lt=resend_before)
    for job in old.order_by("created_at")[:RESEND_LIMIT]:
        enqueue(job)
        resent += 1
    return resent
