"""Start a training run, and send its chunks: shared by `manage.py train_pack` and the admin.

The web side sends the chunk task by name (avatarapp.celery), never importing the worker.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from avatarapp.celery import TRAIN_CHUNK_TASK, app, train_queue
from avatarapp.ops.models import live_families
from avatarapp.packs.manifest import BASE_FAMILIES, SLUG_RE, PackError, check_prompt
from avatarapp.packs.models import StylePack
from avatarapp.training.inputs import TrainingInputError, read_pictures
from avatarapp.training.models import TrainingRun

log = logging.getLogger(__name__)

# The families the worker can train for (worker/training/core.py FAMILIES; this side cannot import it).
TRAINABLE_FAMILIES = ("demo", "sd15")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass
class RunRequest:
    """What the operator asks for; the defaults suit a style pack of 10–50 pictures on SD1.5."""

    images: Path
    slug: str
    caption: str = ""  # default: "<slug> style"
    name: str = ""  # default: the slug in title case
    description: str = ""
    rank: int = 16
    steps: int = 1000
    learning_rate: float = 1e-4
    resolution: int = 512
    seed: int = 0
    batch_size: int = 1
    chunk_steps: int = 50
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = True
    base_family: str = ""  # default: that of the warm workers
    replace: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def train_settings(self) -> dict[str, Any]:
        return {"rank": self.rank, "steps": self.steps, "learning_rate": self.learning_rate,
                "resolution": self.resolution, "seed": self.seed, "batch_size": self.batch_size,
                "mixed_precision": self.mixed_precision, "gradient_checkpointing": self.gradient_checkpointing}


def check_request(request: RunRequest) -> str:
    """Refuse what cannot be trained, before anything is created; returns the model family to train for."""
    if not SLUG_RE.match(request.slug):
        raise TrainingInputError(f"slug '{request.slug}' must be lower-case letters, digits and dashes "
                                 f"(up to 50, starting with a letter or digit)")
    checks = [
        (1 <= request.rank <= 256, "rank must be between 1 and 256"),
        (1 <= request.steps <= 100_000, "steps must be between 1 and 100000"),
        (0 < request.learning_rate <= 1, "the learning rate must be above 0 and at most 1"),
        (request.resolution % 8 == 0 and 64 <= request.resolution <= 2048,
         "resolution must be a multiple of 8 between 64 and 2048"),
        (0 <= request.seed < 2**32, "seed must be between 0 and 2^32-1"),
        (1 <= request.batch_size <= 64, "batch size must be between 1 and 64"),
        (request.chunk_steps >= 1, "chunk steps must be at least 1"),
        (request.mixed_precision in MIXED_PRECISION, f"mixed precision must be one of {', '.join(MIXED_PRECISION)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainingInputError(message)
    try:
        check_prompt(f"{{subject}}, {request.caption or default_caption(request.slug)}", Path("--caption"))
    except PackError as e:
        raise TrainingInputError(str(e)) from None
    if StylePack.objects.filter(slug=request.slug).exists() and not request.replace:
        raise TrainingInputError(f"a pack called {request.slug} is already installed; choose another slug, or "
                                 f"replace it (--replace)")
    if TrainingRun.objects.filter(kind=TrainingRun.Kind.PACK, slug=request.slug, status__in=[TrainingRun.Status.QUEUED,
                                                                 TrainingRun.Status.RUNNING]).exists():
        raise TrainingInputError(f"a training run for {request.slug} is already under way")
    return training_family(request.base_family)


def training_family(asked: str) -> str:
    if asked:
        if asked not in BASE_FAMILIES:
            raise TrainingInputError(f"base family must be one of {', '.join(BASE_FAMILIES)}")
        family = asked
    else:
        families = live_families()
        if not families:
            raise TrainingInputError("no warm worker is running, so there is no base model to train on; start one "
                                     "(`make run`), or name its family (--base-family)")
        if len(families) > 1:
            raise TrainingInputError(f"warm workers run {', '.join(sorted(families))} models: name the family to "
                                     f"train for (--base-family)")
        family = families.pop()
    if family not in TRAINABLE_FAMILIES:
        raise TrainingInputError(f"training style packs for {family} models is not supported yet "
                                 f"(only {', '.join(TRAINABLE_FAMILIES)})")
    return family


def default_caption(slug: str) -> str:
    return f"{slug.replace('-', ' ')} style"


def start_run(request: RunRequest) -> TrainingRun:
    """Check everything, copy the re-encoded pictures into the run's folder, create the row and queue
    the first chunk. Bad input raises TrainingInputError and leaves nothing behind."""
    family = check_request(request)
    caption = request.caption.strip() or default_caption(request.slug)
    pictures = read_pictures(request.images, caption)
    run = TrainingRun(slug=request.slug, name=request.name or request.slug.replace("-", " ").title(),
                      description=request.description or f"A style trained on this server from {len(pictures)} "
                                                         f"pictures.",
                      caption=caption, base_family=family, source=str(request.images.resolve()),
                      settings=request.train_settings(), chunk_steps=request.chunk_steps, replace=request.replace,
                      total_steps=request.steps)
    folder = run.folder / "images"
    try:
        folder.mkdir(parents=True)
        samples = []
        for index, picture in enumerate(pictures):
            file = f"{index:04d}.jpg"
            (folder / file).write_bytes(picture.data)
            samples.append({"file": f"images/{file}", "caption": picture.caption, "source": picture.name})
        run.samples = samples
        with transaction.atomic():
            run.save()
    except BaseException:
        shutil.rmtree(run.folder, ignore_errors=True)
        raise
    send_chunk(run)
    log.info("training run %s for pack %s: %d pictures, %d steps", run.id, run.slug, len(pictures), run.total_steps)
    return run


def send_chunk(run: TrainingRun) -> None:
    """Queue the chunk that starts at the run's current step (a duplicate is harmless)."""
    app.send_task(TRAIN_CHUNK_TASK, args=[str(run.id), run.step], queue=train_queue(run.base_family))
    TrainingRun.objects.filter(id=run.id).update(enqueued_at=timezone.now())
