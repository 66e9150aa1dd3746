"""Run one generation job, from claiming its row to storing its pictures.

The row is the source of truth. A job is claimed with a conditional update
(queued → running), so a message delivered twice, or one for a job that was
cancelled or already finished, does nothing. Progress and the heartbeat go to
the row as the denoising loop runs; a cancel written to the row stops the loop
at the next step.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import F
from django.utils import timezone
from PIL import Image

from avatarapp.jobs.models import Job
from worker.engine import EngineError, GenerationRequest, get_engine
from worker.outputs import remove_outputs, store_output
from worker.packs import ensure_pack_loaded

log = logging.getLogger(__name__)

# Denoising is most of the work; the rest of the bar is decoding and storing.
DENOISE_SHARE = 0.9


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_job(job_id: str) -> Job | None:
    """Move a queued job to running; None if another delivery or a cancel got there first."""
    now = timezone.now()
    updated = Job.objects.filter(id=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0.0,
        attempts=F("attempts") + 1, worker=worker_name(),
    )
    if updated != 1:
        return None
    return Job.objects.select_related("pack", "photo", "user").get(id=job_id)


def fail_job(job: Job, code: str, message: str) -> None:
    log.warning("job %s failed: %s (%s)", job.id, code, message)
    Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED, error_code=code, error_message=message[:2000], finished_at=timezone.now()
    )


class ProgressWriter:
    """Writes progress at most every AVATAR_PROGRESS_INTERVAL seconds and reports cancels."""

    def __init__(self, job: Job):
        self.job = job
        self.last_write = 0.0

    def __call__(self, done: int, total: int) -> bool:
        now = time.monotonic()
        progress = DENOISE_SHARE * done / total
        if done < total and now - self.last_write < settings.AVATAR_PROGRESS_INTERVAL:
            # Still honour a cancel between steps, with a cheap read.
            return self.still_running()
        self.last_write = now
        # The write only lands while the job is still running: a cancel wins.
        updated = Job.objects.filter(id=self.job.id, status=Job.Status.RUNNING).update(
            progress=progress, heartbeat_at=timezone.now()
        )
        return updated == 1

    def still_running(self) -> bool:
        return Job.objects.filter(id=self.job.id, status=Job.Status.RUNNING).exists()


def load_photo(job: Job) -> Image.Image | None:
    if job.photo is None:
        return None
    try:
        with default_storage.open(job.photo.storage_key, "rb") as f:
            return Image.open(io.BytesIO(f.read())).convert("RGB")
    except (FileNotFoundError, OSError):
        return None


def build_request(job: Job, photo: Image.Image) -> GenerationRequest:
    manifest = job.pack.manifest
    return GenerationRequest(
        image=photo,
        prompt=manifest["prompt"].replace("{subject}", "portrait of a person"),
        negative_prompt=manifest.get("negative_prompt", ""),
        # Image n of a job uses seed + n, so each picture is reproducible on its own.
        seeds=[(job.seed + n) % 2**32 for n in range(job.count)],
        steps=int(manifest.get("steps", 20)),
        guidance=float(manifest.get("guidance", 6.0)),
        strength=float(manifest.get("strength", 0.6)),
        width=int(manifest.get("width", 512)),
        height=int(manifest.get("height", 512)),
    )


def run_job(job_id: str) -> str:
    job = claim_job(job_id)
    if job is None:
        return "skipped"
    try:
        photo = load_photo(job)
        if photo is None:
            fail_job(job, "photo_missing", "the job's photo is gone")
            return "failed"
        engine = get_engine()
        ensure_pack_loaded(engine, job.pack)
        weight = float((job.pack.manifest.get("loras") or [{}])[0].get("weight", 1.0))
        with engine.lock:
            engine.switch_pack(job.pack.slug, weight)
            images = engine.generate(build_request(job, photo), on_step=ProgressWriter(job))
        if not ProgressWriter(job).still_running():
            return "canceled"
        for index, image in enumerate(images):
            store_output(job, index, image)
        finished = Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
            status=Job.Status.SUCCEEDED, progress=1.0, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
        if finished != 1:
            # Cancelled while the files were written: take them away again.
            remove_outputs(job)
            return "canceled"
        return "succeeded"
    except SoftTimeLimitExceeded:
        fail_job(job, "timed_out", "the soft time limit was reached")
    except EngineError as e:
        fail_job(job, "generation_failed", str(e))
    except Exception as e:
        if "out of memory" in str(e).lower():
            fail_job(job, "out_of_memory", str(e))
        else:
            log.exception("job %s crashed", job_id)
            fail_job(job, "generation_failed", f"{type(e).__name__}: {e}")
    return "failed"
