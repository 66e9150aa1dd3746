"""One chunk of a style pack's training run: the body of the `train_chunk` task.

1. Claim the run: a conditional update from queued at the message's step to running, so a
   duplicate message, or one for a step already done, does nothing.
2. Load the run's checkpoint (the first chunk encodes the pictures and writes step 0's).
3. Train `chunk_steps` steps, writing progress and the heartbeat to the row after each.
4. Save the new checkpoint atomically, then record it and the step on the row, then queue
   the next chunk; the last chunk writes the pack and installs it instead.

A worker killed anywhere in this leaves the row running at the old step with its heartbeat
going stale (the reaper queues that chunk again, from the old checkpoint) or queued with a
message that may be gone (the reaper sends it again): either way the chunk runs again from
the same checkpoint and gives the same weights. Between chunks the worker takes whatever
else is queued, so generation jobs interleave with training.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from pathlib import Path
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from avatarapp.training.actions import send_chunk
from avatarapp.training.models import TrainingRun
from worker.engine import Engine, get_engine
from worker.errors import EngineError
from worker.holds import hold_at
from worker.outputs import clear_prefix_if_erased
from worker.training import core, likeness
from worker.training.pack import write_and_install

log = logging.getLogger(__name__)

ENCODINGS = "encodings.pt"
HEARTBEAT_EVERY = 1.0  # seconds between heartbeats while a test holds a chunk
HOLD_POLL = 0.02
# A chunk also ends once it has run this share of the task's soft time limit, whatever its step
# count: a slow machine (SD1.5 on a CPU) still checkpoints in time, and jobs wait at most this long.
CHUNK_TIME_SHARE = 0.5


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def checkpoint_path(run: TrainingRun, step: int) -> Path:
    return run.folder / f"checkpoint-{step:07d}.pt"


def run_chunk(run_id: str, step: int) -> str:
    """Run the chunk of `run_id` that starts at `step`, if it is still to be done; says what happened."""
    hold_before_chunk()
    remove_orphan_folders()
    run = TrainingRun.objects.filter(id=run_id).first()
    if run is None:
        # Deleted since its message was sent (the row always exists first): its folder goes too.
        shutil.rmtree(Path(settings.AVATAR_TRAINING_DIR) / str(run_id), ignore_errors=True)
        return "gone"
    engine = get_engine()
    if run.base_family != engine.family:
        # Sent to the wrong queue (by hand?): this worker's model is not the one to train on.
        log.error("training run %s is for %s models; this worker runs %s", run.id, run.base_family, engine.family)
        return "wrong family"
    now = timezone.now()
    claimed = TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.QUEUED, step=step).update(
        status=TrainingRun.Status.RUNNING, heartbeat_at=now, started_at=Coalesce(F("started_at"), now),
        attempts=F("attempts") + 1, worker=worker_name(), current_step=step)
    if not claimed:
        log.info("training run %s: nothing to do for step %d", run.id, step)
        return "nothing to do"
    run.refresh_from_db()
    try:
        return train_and_record(engine, run)
    except SoftTimeLimitExceeded:
        fail(run, f"the chunk from step {run.step} ran past the time limit (AVATAR_SOFT_TIME_LIMIT): use fewer "
                  f"steps per chunk (--chunk-steps)")
    except Exception as e:  # noqa: BLE001 - whatever it is, the run says so and the next message is not sent
        log.exception("training run %s failed", run.id)
        fail(run, f"{type(e).__name__}: {e}")
    return "failed"


# A run's folder is made a moment before its row (the pictures first, then the row): younger
# folders without a row are left alone.
ORPHAN_GRACE = 3600


def remove_orphan_folders() -> int:
    """Remove run folders whose row has gone (a likeness model deleted between chunks, its account
    erased, a run the operator deleted): on a deployment where only the workers mount
    AVATAR_TRAINING_DIR, the web side's own clean-up (the post_delete signal) cannot reach them."""
    root = Path(settings.AVATAR_TRAINING_DIR)
    if not root.is_dir():
        return 0
    folders = {entry.name: entry for entry in root.iterdir() if entry.is_dir()}
    known = {str(i) for i in TrainingRun.objects.filter(id__in=[n for n in folders if is_uuid(n)])
             .values_list("id", flat=True)}
    removed = 0
    for name, folder in folders.items():
        if name in known or not is_uuid(name) or time.time() - folder.stat().st_mtime < ORPHAN_GRACE:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    if removed:
        log.info("removed %d training folders whose runs are gone", removed)
    return removed


def is_uuid(name: str) -> bool:
    try:
        UUID(name)
    except ValueError:
        return False
    return True


def fail(run: TrainingRun, message: str) -> None:
    TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.RUNNING).update(
        status=TrainingRun.Status.FAILED, error=message[:4000], finished_at=timezone.now())
    if run.is_likeness:
        run.remove_folder()  # a failed likeness run keeps nothing of the face


def gone(run: TrainingRun) -> bool:
    """Whether the run's row was deleted while this chunk ran (its owner deleted the likeness model or
    the account); then what the chunk wrote goes too, as the row's deletion took the rest."""
    if TrainingRun.objects.filter(id=run.id).exists():
        return False
    run.remove_folder()
    return True


def train_and_record(engine: Engine, run: TrainingRun) -> str:
    settings_ = core.TrainSettings.from_json(run.settings)
    core.check_family(engine.family)
    encoded = encodings(engine, run, settings_)
    until = min(run.step + run.chunk_steps, run.total_steps)
    progress = Progress(run)
    with core.lora_unet(engine, settings_) as unet:
        if run.step == 0:
            start = core.initial_checkpoint(unet, settings_)
            initial_loss = core.probe_loss(engine, unet, encoded, settings_, start.lora)
            TrainingRun.objects.filter(id=run.id).update(initial_loss=initial_loss)
        else:
            start = core.load_checkpoint(Path(run.checkpoint))
        if start.step != run.step:
            raise EngineError(f"the checkpoint {run.checkpoint} is at step {start.step}, the run at {run.step}")
        done = core.train_chunk(engine, unet, encoded, settings_, start, until, on_step=progress)
        until = done.step  # earlier than asked when the chunk ran out of time
        final_loss = core.probe_loss(engine, unet, encoded, settings_, done.lora) if until == run.total_steps else None
    path = checkpoint_path(run, until)
    core.save_checkpoint(done, path)
    if gone(run):
        return "deleted"
    if until < run.total_steps:
        return next_chunk(run, until, path, done.losses)
    if run.is_likeness:
        return finish_likeness(engine, run, done, final_loss)
    version = write_and_install(engine, run, done.lora)
    TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.RUNNING, step=run.step).update(
        status=TrainingRun.Status.SUCCEEDED, step=until, current_step=until, checkpoint=str(path),
        losses=done.losses, final_loss=final_loss, pack_version=version, finished_at=timezone.now(), attempts=0)
    remove_old_checkpoints(run, keep=path)
    log.info("training run %s done: pack %s %s installed", run.id, run.slug, version)
    return "installed"


def next_chunk(run: TrainingRun, until: int, path: Path, losses: list[float]) -> str:
    # The row first, then the message: a worker killed in between leaves the run queued at the
    # new step, and the reaper sends its lost message.
    updated = TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.RUNNING, step=run.step).update(
        status=TrainingRun.Status.QUEUED, step=until, current_step=until, checkpoint=str(path), losses=losses,
        attempts=0, heartbeat_at=None, worker="")
    if not updated:
        gone(run)
        return "superseded"  # the reaper gave this chunk to another worker meanwhile, or the run was deleted
    remove_old_checkpoints(run, keep=path)
    run.refresh_from_db()
    send_chunk(run)
    return f"step {until}"


def encodings(engine: Engine, run: TrainingRun, settings_: core.TrainSettings) -> core.Encoded:
    """The pictures' latents and captions' embeddings: made by the first chunk, read by the others."""
    path = run.folder / ENCODINGS
    if path.is_file():
        return core.Encoded.load(path)
    if run.is_likeness:
        encoded = likeness.encode_likeness(engine, run, settings_, beat=lambda: beat(run))
    else:
        samples = [core.Sample(run.folder / sample["file"], sample["caption"]) for sample in run.samples]
        encoded = core.encode_samples(engine, samples, settings_.resolution, on_picture=lambda: beat(run))
    core.atomic_save(encoded.to_json(), path)
    return encoded


def finish_likeness(engine: Engine, run: TrainingRun, done: core.Checkpoint, final_loss: float | None) -> str:
    """Store the person's LoRA privately, measure it, mark the run done and remove its folder at once."""
    key, data = likeness.store_lora(engine, run, done.lora)
    report = likeness.likeness_report(engine, run, data)
    finished = TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.RUNNING, step=run.step).update(
        status=TrainingRun.Status.SUCCEEDED, step=done.step, current_step=done.step, checkpoint="",
        losses=done.losses, final_loss=final_loss, lora_key=key, report=report, finished_at=timezone.now(),
        attempts=0)
    if not finished:
        if TrainingRun.objects.filter(id=run.id).exists():
            return "superseded"  # the reaper gave the chunk to another worker, which stores the same LoRA
        # Deleted (by its owner, or with the account) while it was being stored: nothing of it may stay.
        run.remove_folder()
        default_storage.delete(key)
        clear_prefix_if_erased(run.owner_id)
        return "deleted"
    run.remove_folder()
    log.info("likeness model %s trained: likeness %s without, %s with", run.id, report.get("without_model"),
             report.get("with_model"))
    return "stored"


def beat(run: TrainingRun) -> None:
    TrainingRun.objects.filter(id=run.id, status=TrainingRun.Status.RUNNING).update(heartbeat_at=timezone.now())


def remove_old_checkpoints(run: TrainingRun, keep: Path) -> None:
    for old in run.folder.glob("checkpoint-*.pt"):
        if old != keep:
            old.unlink(missing_ok=True)


class Progress:
    """Writes each step's number and the heartbeat to the row (a step takes far longer than the write),
    and ends the chunk early once it has used its share of the time limit."""

    def __init__(self, run: TrainingRun) -> None:
        self.run_id = run.id
        self.deadline = time.monotonic() + CHUNK_TIME_SHARE * settings.CELERY_TASK_SOFT_TIME_LIMIT

    def __call__(self, step: int, loss: float) -> bool:
        TrainingRun.objects.filter(id=self.run_id, status=TrainingRun.Status.RUNNING).update(
            current_step=step, heartbeat_at=timezone.now())
        hold_after_step(self.run_id)
        return time.monotonic() < self.deadline


def hold_after_step(run_id: UUID) -> None:
    """Test hook: while AVATAR_HOLD_FILE exists, wait after a step (the heartbeat goes on: the
    chunk is alive), as generation jobs do; tests kill the worker here, mid-chunk."""
    if not settings.AVATAR_HOLD_FILE:
        return
    last_beat = 0.0
    while os.path.exists(settings.AVATAR_HOLD_FILE):
        if time.monotonic() - last_beat > HEARTBEAT_EVERY:
            TrainingRun.objects.filter(id=run_id, status=TrainingRun.Status.RUNNING).update(
                heartbeat_at=timezone.now())
            last_beat = time.monotonic()
        time.sleep(HOLD_POLL)


def hold_before_chunk() -> None:
    """Test hook (worker/holds.py): before a chunk claims its run, so between two chunks."""
    hold_at("chunk")
