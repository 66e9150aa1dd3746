"""A person's likeness model at generation time: read from storage once per worker, applied beside the pack."""

from __future__ import annotations

import logging

import torch
from django.conf import settings
from django.core.files.storage import default_storage
from safetensors.torch import load as load_safetensors

from avatarapp.jobs.models import Job
from avatarapp.training.models import TrainingRun
from worker.engine import Engine, EngineError
from worker.lora_modes import Likeness

log = logging.getLogger(__name__)


def job_likeness(job: Job) -> TrainingRun | None:
    """The job's likeness model, or None for a job without one; refused if it was asked for and has gone."""
    if not job.with_likeness:
        return None
    run = (TrainingRun.objects.filter(id=job.likeness_id, status=TrainingRun.Status.SUCCEEDED).first()
           if job.likeness_id is not None else None)
    if run is None or not run.lora_key:
        raise EngineError("the likeness model this job asked for has been deleted")
    return run


def ensure_likeness_loaded(engine: Engine, run: TrainingRun, weight: float) -> Likeness:
    """Load the model's LoRA from storage unless the engine holds it already; what switch_pack takes."""
    key = str(run.id)

    def read() -> dict[str, torch.Tensor]:
        try:
            with default_storage.open(run.lora_key, "rb") as f:
                return load_safetensors(f.read())
        except (FileNotFoundError, OSError) as e:
            raise EngineError(f"the likeness model {key} is not in storage: {e}") from e

    engine.load_likeness(key, read, keep=settings.AVATAR_LIKENESS_RESIDENT)
    return key, weight


def forget_deleted(engine: Engine) -> None:
    """Unload likeness models whose rows have gone (deleted by their owner, erased with the account)."""
    held = engine.loaded_likeness
    if not held:
        return
    alive = {str(i) for i in TrainingRun.objects.filter(id__in=held).values_list("id", flat=True)}
    for key in [k for k in held if k not in alive]:
        log.info("likeness model %s was deleted: unloaded", key)
        engine.unload_likeness(key)
