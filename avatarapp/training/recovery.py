"""The reaper's part for training runs (called from worker/reaper.py on the maintenance queue).

A chunk whose worker died (SIGKILL, out of memory, machine gone) stops writing its heartbeat:
its run goes back to queued at its last saved step and the chunk is sent again, or the run
fails with `worker_lost` once that chunk has used AVATAR_MAX_ATTEMPTS tries. A queued run
whose message was sent more than AVATAR_REQUEUE_AFTER seconds ago (a message the broker lost,
or one a killed worker had taken) is sent again. Duplicates are harmless: a chunk claims its
run only if it is still queued at the message's step.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings

from avatarapp.training.actions import send_chunk
from avatarapp.training.models import TrainingRun

log = logging.getLogger(__name__)


def recover_training_runs(now: datetime) -> dict[str, int]:
    stale_before = now - timedelta(seconds=settings.AVATAR_HEARTBEAT_TIMEOUT)
    requeued = failed = resent = 0
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale_before):
        still_stale = TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.RUNNING, step=run.step,
                                                 heartbeat_at__lt=stale_before)
        if run.attempts >= settings.AVATAR_MAX_ATTEMPTS:
            lost = still_stale.update(status=TrainingRun.Status.FAILED, finished_at=now,
                                      error=f"worker_lost: the worker stopped answering {run.attempts} times "
                                            f"during the chunk from step {run.step}")
            if lost and run.is_likeness:
                run.remove_folder()  # a failed likeness run keeps nothing of the face
            failed += lost
        elif still_stale.update(status=TrainingRun.Status.QUEUED, heartbeat_at=None, worker="",
                                current_step=run.step):
            log.warning("training run %s lost its worker at step %d; queued again from its checkpoint",
                        run.id, run.current_step)
            run.refresh_from_db()
            send_chunk(run)
            requeued += 1
    resend_before = now - timedelta(seconds=settings.AVATAR_REQUEUE_AFTER)
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED, enqueued_at__lt=resend_before):
        send_chunk(run)
        resent += 1
    return {"training_requeued": requeued, "training_failed": failed, "training_resent": resent}
