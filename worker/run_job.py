"""Run generation jobs, from claiming their rows to storing their pictures.

The row is the source of truth. Every queued job has one message on its model
family's queue, but a message is only a turn: the worker claims the job that is
fairest to run next (round-robin across users, avatarapp.jobs.models.fair_queue_sql)
together with up to AVATAR_MAX_BATCH pictures' worth of other queued jobs for the
same pack (same prompt, size and steps), in one transaction, and runs them as one
denoising batch with per-job seeds. Claiming is a conditional update (queued →
running), so a message delivered twice, or one whose job was already taken, takes
the next fair job, or nothing when none is queued.

Progress and the heartbeat go to the rows as the denoising loop runs; a cancel
written to a row drops that job from the batch's results, and when every job
of the batch is cancelled the loop stops at the next step.
"""

from __future__ import annotations

import io
import logging
import math
import os
import socket
import time
from uuid import UUID

import torch
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from avatarapp.actions.jobs import enqueue
from avatarapp.celery import generation_queue
from avatarapp.faces.framing import centre_crop, face_crop
from avatarapp.jobs.models import Job, fair_queue
from avatarapp.packs.models import StylePack
from avatarapp.photos.models import Photo
from avatarapp.training.models import TrainingRun
from worker.engine import Engine, EngineError, GenerationRequest, capped, get_engine
from worker.faces import FaceReading, get_analyser
from worker.holds import hold_at
from worker.likeness import ensure_likeness_loaded, forget_deleted, job_likeness
from worker.lora_modes import Likeness
from worker.outputs import remove_outputs, store_output
from worker.packs import ensure_pack_loaded
from worker.ranking import Candidate, measure, rank

log = logging.getLogger(__name__)

# What a pack's prompt template says in its {subject} slot.
SUBJECT = "portrait of a person"
# Denoising is most of the work; the rest of the bar is decoding and storing.
DENOISE_SHARE = 0.9


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# How far down the fair order one claim looks for its job and same-pack companions.
CLAIM_LOOKAHEAD = 500


def claim_batch(job_id: str, family: str, max_pictures: int | None = None) -> list[Job]:
    """Claim the queued job it is fairest to run next on this worker's `family` (not necessarily
    the named one), and same-pack companions; [] when none is queued, or when the named job is
    queued for another model family (run_job sends it to its own family's queue).

    Every queued job has its own message, so a message claiming "the fairest" job instead of
    "its" job keeps every message useful: the fair order (jobs.models.fair_queue_sql) is followed
    whichever message comes first, and a message whose job was already taken into a batch takes
    the next fair one, or nothing. Companions are the queued jobs of the same pack and preview
    flag after it in that order, up to `max_pictures` (AVATAR_MAX_BATCH) pictures.
    """
    max_pictures = max_pictures or settings.AVATAR_MAX_BATCH
    named = Job.objects.filter(id=job_id).values_list("status", "pack__base_family").first()
    if named is not None and named[0] == Job.Status.QUEUED and named[1] != family:
        return []
    with transaction.atomic():
        # On SQLite the transaction itself is the lock (IMMEDIATE mode takes the write lock at
        # BEGIN), so two workers' claims run one after the other and the order read is current.
        # On PostgreSQL the order is read without locks (FOR UPDATE is not allowed with window
        # functions), then each chosen row is locked with SKIP LOCKED, re-checked as still queued:
        # a row another worker is claiming right now is passed over, never waited for. Only rows
        # this claim takes are locked, so a message never comes away empty while a job it could
        # have taken is merely held by another claim that then leaves it queued.
        order = fair_queue(family, CLAIM_LOOKAHEAD)
        first = next((row for row in order if lock_queued([row[0]], family)), None)
        if first is None:
            log.info("message for job %s: no %s job queued", job_id, family)
            return []
        first_id, first_pack, first_preview, pictures = first
        ids, wanted = [first_id], []
        for job, pack_id, preview, count in order[order.index(first) + 1:]:
            if pack_id == first_pack and preview == first_preview and pictures + count <= max_pictures:
                wanted.append(job)
                pictures += count
        if wanted:
            # A likeness model is one person's: only their jobs with that same model share a batch.
            with_likeness, likeness_id = Job.objects.filter(id=first_id).values_list(
                "with_likeness", "likeness_id").get()
            same = set(Job.objects.filter(id__in=wanted, with_likeness=with_likeness, likeness_id=likeness_id)
                       .values_list("id", flat=True))
            wanted = [job for job in wanted if job in same]
        if wanted:
            locked = lock_queued(wanted, family)
            ids += [job for job in wanted if job in locked]
        now = timezone.now()
        Job.objects.filter(id__in=ids, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0.0,
            attempts=F("attempts") + 1, worker=worker_name(),
        )
    jobs = Job.objects.select_related("pack", "photo", "user").filter(id__in=ids)
    return sorted(jobs, key=lambda job: ids.index(job.id))


def lock_queued(ids: list[UUID], family: str) -> set[UUID]:
    """Those of `ids` still queued that no other worker is claiming, locked until the transaction
    ends (PostgreSQL); on SQLite, whose transaction already holds the write lock, those still queued."""
    # A subquery, not a join: FOR UPDATE on a join would lock the pack's row too, and a
    # second worker claiming another job of that pack would skip its job as locked.
    runnable = StylePack.objects.filter(base_family=family).values("id")
    queued = Job.objects.filter(id__in=ids, status=Job.Status.QUEUED, pack_id__in=runnable).order_by()
    if connection.features.has_select_for_update_skip_locked:
        queued = queued.select_for_update(skip_locked=True)
    return set(queued.values_list("id", flat=True))


def fail_jobs(jobs: list[Job], code: str, message: str) -> None:
    log.warning("jobs %s failed: %s (%s)", [str(j.id) for j in jobs], code, message)
    Job.objects.filter(id__in=[j.id for j in jobs], status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED, error_code=code, error_message=message[:2000], finished_at=timezone.now()
    )


def running_ids(jobs: list[Job]) -> set:
    return set(Job.objects.filter(id__in=[j.id for j in jobs], status=Job.Status.RUNNING).values_list("id", flat=True))


class ProgressWriter:
    """Writes progress (at most every AVATAR_PROGRESS_INTERVAL s) and stops the loop once all are cancelled.

    A batch may run as several chunks (after an out-of-memory retry); chunk n of
    `chunks` covers its share of the bar.
    """

    def __init__(self, jobs: list[Job], chunk: int = 0, chunks: int = 1) -> None:
        self.ids = [job.id for job in jobs]
        self.chunk, self.chunks = chunk, chunks
        self.last_write = 0.0

    def __call__(self, done: int, total: int) -> bool:
        keep_going = self.write(done, total)
        if keep_going and settings.AVATAR_HOLD_FILE:
            keep_going = self.hold()
        return keep_going

    def hold(self) -> bool:
        """Test hook: wait while AVATAR_HOLD_FILE exists; stop waiting (and the loop) on a cancel."""
        while os.path.exists(settings.AVATAR_HOLD_FILE):
            if not Job.objects.filter(id__in=self.ids, status=Job.Status.RUNNING).exists():
                return False
            time.sleep(0.02)
        return True

    def write(self, done: int, total: int) -> bool:
        now = time.monotonic()
        if done < total and now - self.last_write < settings.AVATAR_PROGRESS_INTERVAL:
            # Between writes a cheap read still honours a cancel at the next step.
            return Job.objects.filter(id__in=self.ids, status=Job.Status.RUNNING).exists()
        self.last_write = now
        # Only rows still running are written: a cancel always wins.
        updated = Job.objects.filter(id__in=self.ids, status=Job.Status.RUNNING).update(
            progress=DENOISE_SHARE * (self.chunk + done / total) / self.chunks, heartbeat_at=timezone.now()
        )
        return updated > 0


def load_photo(job: Job) -> Image.Image | None:
    if job.photo is None:
        return None
    try:
        with default_storage.open(job.photo.storage_key, "rb") as f:
            return Image.open(io.BytesIO(f.read())).convert("RGB")
    except (FileNotFoundError, OSError):
        return None


def load_photos(jobs: list[Job]) -> dict[UUID, Image.Image]:
    """Each job's photo by job id; a job whose photo is gone fails on its own and is left out."""
    photos = {}
    for job in jobs:
        photo = load_photo(job)
        if photo is None:
            fail_jobs([job], "photo_missing", "the job's photo is gone")
        else:
            photos[job.id] = photo
    return photos


def oversample(job: Job) -> int:
    """How many pictures are made for each one kept: the pack's `oversample` (a preview makes one)."""
    return 1 if job.preview else job.pack.spec.oversample


def seeds_for(job: Job) -> list[int]:
    # Picture n of a job uses seed + n, so each picture is reproducible on its own.
    return [(job.seed + n) % 2**32 for n in range(job.count * oversample(job))]


def output_aspect(pack: StylePack) -> float:
    """The width / height of the pack's pictures, after the operator's caps."""
    _, width, height = capped(1, pack.spec.width, pack.spec.height, 0, settings.AVATAR_MAX_SIDE)
    return width / height


def face_of(image: Image.Image, photo: Photo | None) -> Image.Image | None:
    """The chosen face with some margin, the identity adapter's reference; None with no face on record."""
    boxes = photo.face_boxes if photo is not None else []
    return image.crop(face_crop(boxes[0], image.width, image.height).as_tuple()) if boxes else None


def frame(image: Image.Image, photo: Photo | None, aspect: float) -> Image.Image:
    """The part of the photo the portrait is made from: head and shoulders around its largest
    face (the crop the upload page showed), or the middle of a photo stored before faces were found."""
    crop = photo.crop(aspect) if photo is not None else centre_crop(image.width, image.height, aspect)
    return image.crop(crop.as_tuple())


def subject_for(likeness: TrainingRun | None) -> str:
    """What the pack's {subject} says: with a likeness model, its rare token names the person."""
    if likeness is None:
        return SUBJECT
    return f"portrait of {likeness.instance_token} {likeness.class_noun}"


def pack_request(pack: StylePack, images: list[Image.Image], seeds: list[int],
                 preview: bool = False, subject: str = SUBJECT) -> GenerationRequest:
    """The pack's recommended settings (or its few-step [fast] ones for a preview) within the
    operator's caps, for these photos and seeds. Jobs and the pack's own preview (worker/previews.py)
    are both made with it."""
    spec = pack.spec
    # A preview of a pack that has lost its [fast] table since the job was created runs in full.
    fast = spec.fast if preview else None
    if fast is None:
        steps, guidance, strength, scheduler = spec.steps, spec.guidance, spec.strength, spec.scheduler
    else:
        strength = fast.strength if fast.strength is not None else spec.strength
        # img2img runs steps x strength of the schedule; a preview's `steps` are the ones it really runs.
        steps, guidance, scheduler = math.ceil(fast.steps / strength), fast.guidance, fast.scheduler
    steps, width, height = capped(steps, spec.width, spec.height, settings.AVATAR_MAX_STEPS, settings.AVATAR_MAX_SIDE)
    return GenerationRequest(
        images=images,
        prompt=spec.prompt.replace("{subject}", subject),
        negative_prompt=spec.negative_prompt,
        seeds=seeds,
        steps=steps,
        guidance=guidance,
        strength=strength,
        width=width,
        height=height,
        scheduler=scheduler,
        # The selfie steers each picture through the identity adapter; a quick preview goes without it.
        identity_images=images,
        identity_strength=0.0 if preview else spec.identity_strength,
    )


def build_request(pack: StylePack, preview: bool, items: list[tuple[Job, int]],
                  photos: dict[UUID, Image.Image],
                  faces: dict[UUID, Image.Image] | None = None, subject: str = SUBJECT) -> GenerationRequest:
    """One chunk of a batch: each (job, seed) item's framed photo and seed, and its face for the
    identity adapter (the framed photo itself when no face was found)."""
    request = pack_request(pack, [photos[job.id] for job, _ in items], [seed for _, seed in items], preview,
                           subject)
    if faces:
        request.identity_images = [faces.get(job.id, photos[job.id]) for job, _ in items]
    return request


def denoise(engine: Engine, jobs: list[Job], photos: dict[UUID, Image.Image], batch_size: int,
            faces: dict[UUID, Image.Image] | None = None,
            likeness: tuple[TrainingRun, Likeness] | None = None) -> dict[UUID, list[Image.Image]]:
    """Every picture of the jobs (one pack, all previews or none, one likeness model or none),
    `batch_size` pictures at a time."""
    subject = subject_for(likeness[0] if likeness else None)
    pack, preview = jobs[0].pack, jobs[0].preview
    items = [(job, seed) for job in jobs for seed in seeds_for(job)]
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    images: dict[UUID, list[Image.Image]] = {job.id: [] for job in jobs}
    for n, chunk in enumerate(chunks):
        chunk_jobs = list({job.id: job for job, _ in chunk}.values())
        if not running_ids(chunk_jobs):
            continue  # all of this chunk's jobs were cancelled
        request = build_request(pack, preview, chunk, photos, faces, subject)
        with engine.lock:
            engine.switch_pack(pack.slug, fast=preview, likeness=likeness[1] if likeness else None)
            pictures = engine.generate(request, on_step=ProgressWriter(chunk_jobs, n, len(chunks)))
        for (job, _), picture in zip(chunk, pictures, strict=True):
            images[job.id].append(picture)
    return images


def is_out_of_memory(error: Exception) -> bool:
    return "out of memory" in str(error).lower() or type(error).__name__ == "OutOfMemoryError"


def denoise_with_retry(engine: Engine, jobs: list[Job], photos: dict[UUID, Image.Image],
                       faces: dict[UUID, Image.Image] | None = None,
                       likeness: tuple[TrainingRun, Likeness] | None = None) -> dict[UUID, list[Image.Image]]:
    """denoise() at AVATAR_MAX_BATCH pictures a batch, halved after each out-of-memory error down to one."""
    batch_size = settings.AVATAR_MAX_BATCH
    while True:
        try:
            return denoise(engine, jobs, photos, batch_size, faces, likeness)
        except Exception as e:
            if not is_out_of_memory(e) or batch_size == 1:
                raise
            batch_size //= 2
            log.warning("out of memory; retrying jobs at batch size %d", batch_size)
            torch.cuda.empty_cache()  # a no-op without CUDA
            jobs = [job for job in jobs if job.id in running_ids(jobs)]
            if not jobs:
                return {}


def hold_before_storing() -> None:
    """Test hook (worker/holds.py): after the last look at the rows and before storing, the
    narrowest window an erasure or a cancel can fall into."""
    hold_at("store")


def read_selfie_face(photo: Image.Image, job: Job) -> FaceReading | None:
    """The face in the job's selfie the portraits are compared with: the one chosen at upload."""
    boxes = job.photo.face_boxes if job.photo is not None else []
    return get_analyser().read(photo, boxes[0] if boxes else None)


def choose_best(jobs: list[Job], photos: dict[UUID, Image.Image],
                images: dict[UUID, list[Image.Image]]) -> dict[UUID, list[Candidate]]:
    """Each job's `count` best pictures, best first: measured against the selfie's face (likeness,
    skin tone) and ranked (worker/ranking.py). With the pack's `oversample` there are more pictures
    than `count`, and the rest are dropped; a job never fails for low likeness."""
    best: dict[UUID, list[Candidate]] = {}
    for job in jobs:
        pictures = images.get(job.id, [])
        if not pictures:
            continue
        source = read_selfie_face(photos[job.id], job)
        candidates = measure(get_analyser(), source, pictures, max_lightening=settings.AVATAR_SKIN_LIGHTENING_MAX)
        best[job.id] = rank(candidates, job.count)
        dropped = len(pictures) - len(best[job.id])
        if dropped:
            log.info("job %s: kept the %d pictures most like the selfie of %d", job.id, job.count, len(pictures))
    return best


def finish(jobs: list[Job], images: dict[UUID, list[Candidate]]) -> int:
    """Store each still-running job's pictures and mark it succeeded; drop the cancelled ones'.

    A job cancelled, or whose owner erased their account, while its pictures were being
    written leaves nothing behind: its files are removed again by their deterministic keys.
    Returns how many jobs succeeded.
    """
    succeeded = 0
    still_running = running_ids(jobs)
    hold_before_storing()
    for job in jobs:
        if job.id not in still_running or len(images.get(job.id, [])) != job.count:
            continue
        try:
            # Best first: the index is the rank, so the gallery and the API list the best first.
            for index, candidate in enumerate(images[job.id]):
                store_output(job, index, candidate.image, likeness=candidate.likeness,
                             face_found=candidate.reading is not None, skin_tone_shift=candidate.skin_tone_shift)
        except IntegrityError:
            log.info("job %s went away while its pictures were stored; removing them", job.id)
            remove_outputs(job)
            continue
        done = Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
            status=Job.Status.SUCCEEDED, progress=1.0, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
        if done != 1:
            remove_outputs(job)  # cancelled or erased while its files were written: take them away again
        succeeded += done
    return succeeded


def send_to_own_family(job_id: str, family: str) -> bool:
    """Re-send a queued job whose pack is made for another model family to that family's queue."""
    job = Job.objects.select_related("pack").filter(id=job_id, status=Job.Status.QUEUED).first()
    if job is None or job.pack.base_family == family:
        return False
    log.warning("job %s is for %s models, this worker runs %s: sent to %s", job.id, job.pack.base_family, family,
                generation_queue(job.pack.base_family))
    enqueue(job)
    return True


def run_job(job_id: str) -> str:
    """Run the fairest queued job of this worker's family (the message's own, or another's: every message
    is one turn) and the same-pack jobs claimed with it, from claim to stored pictures."""
    # 1. Claim the job and its companions; a repeated or stale message claims nothing. A job for
    #    another model family (a message sent to the wrong queue, or before the operator changed
    #    this worker's model) is not claimed either: it goes to its family's queue, untouched.
    engine = get_engine()
    jobs = claim_batch(job_id, engine.family)
    if not jobs:
        return "rerouted" if send_to_own_family(job_id, engine.family) else "skipped"
    try:
        # 2. Load the pack on the warm engine (nothing to do when this version is resident), and the
        #    person's likeness model if the jobs use one (they all use the same: claim_batch).
        ensure_pack_loaded(engine, jobs[0].pack)
        forget_deleted(engine)
        run = job_likeness(jobs[0])
        likeness = (run, ensure_likeness_loaded(engine, run, jobs[0].likeness_weight)) if run else None
        # 3. Read the photos, and frame each around its face; a job whose photo is gone has failed on its own.
        photos = load_photos(jobs)
        jobs = [job for job in jobs if job.id in photos]
        if not jobs:
            return "failed"
        aspect = output_aspect(jobs[0].pack)
        framed = {job.id: frame(photos[job.id], job.photo, aspect) for job in jobs}
        faces = {job.id: face for job in jobs if (face := face_of(photos[job.id], job.photo)) is not None}
        # 4. Denoise every picture with the pack active, writing progress; a cancel stops within a step.
        images = denoise_with_retry(engine, jobs, framed, faces, likeness)
        # 5. Keep each job's best pictures (likeness to the selfie, no lightened skin), best first.
        best = choose_best(jobs, photos, images)
        # 6. Store the pictures of the jobs still running and mark them succeeded.
        return "done" if finish(jobs, best) else "canceled"
    except SoftTimeLimitExceeded:
        fail_jobs(jobs, "timed_out", "the soft time limit was reached")
    except EngineError as e:
        fail_jobs(jobs, "generation_failed", str(e))
    except Exception as e:
        if is_out_of_memory(e):
            fail_jobs(jobs, "out_of_memory", str(e))
        else:
            log.exception("jobs %s crashed", [str(j.id) for j in jobs])
            fail_jobs(jobs, "generation_failed", f"{type(e).__name__}: {e}")
    return "failed"
