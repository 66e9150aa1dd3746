"""Recover jobs whose worker died or whose message the broker lost.

Runs every AVATAR_REAPER_INTERVAL seconds from celery beat. A running job whose
heartbeat is older than AVATAR_HEARTBEAT_TIMEOUT lost its worker (SIGKILL,
out-of-memory kill, a machine gone): it goes back to the queue, or fails with
`worker_lost` once it has used AVATAR_MAX_ATTEMPTS attempts, so a job that
crashes its worker every time cannot crash them forever. A queued job whose
message was sent more than AVATAR_REQUEUE_AFTER seconds ago is sent again, in
case the broker lost it (Redis without persistence loses its queues on a
restart); a duplicate is harmless because claiming is conditional.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from avatarapp.actions.jobs import enqueue
from avatarapp.jobs.models import Job

log = logging.getLogger(__name__)


def reap_stale_jobs() -> dict:
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.AVATAR_HEARTBEAT_TIMEOUT)
    requeued = failed = resent = 0
    for job in Job.objects.select_related("pack").filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale_before):
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
    resend_before = now - timedelta(seconds=settings.AVATAR_REQUEUE_AFTER)
    for job in Job.objects.select_related("pack").filter(status=Job.Status.QUEUED, enqueued_at__lt=resend_before)[:500]:
        enqueue(job)
        resent += 1
    return {"requeued": requeued, "failed": failed, "resent": resent}
