"""A style pack being trained: the row is the source of truth for the run, as a job's row is for a job.

The worker trains in chunks (worker/training/chunks.py). Each chunk claims the row by a
conditional update (queued at step N → running), writes its progress and heartbeat to it,
and at its end records the new checkpoint and step and queues the next chunk, so a message
delivered twice, or one for a step already done, does nothing.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models

# A likeness model's prompts (DreamBooth): the rare token is a word the text encoder knows almost
# nothing about, so the model learns "this person" into it without unlearning the words around it.
INSTANCE_TOKEN = "ohwx"
CLASS_NOUN = "person"
INSTANCE_PROMPT = f"a photo of {INSTANCE_TOKEN} {CLASS_NOUN}"
CLASS_PROMPT = f"a photo of a {CLASS_NOUN}"


class TrainingRun(models.Model):
    """A style pack (kind "pack", started by the operator) or a person's likeness model (kind
    "likeness", started by that person, owned by them and erased with them) being trained."""

    class Kind(models.TextChoices):
        PACK = "pack"
        LIKENESS = "likeness"

    class Status(models.TextChoices):
        QUEUED = "queued"  # the next chunk (from `step`) waits for a worker
        RUNNING = "running"  # a worker runs a chunk from `step`
        SUCCEEDED = "succeeded"  # the pack is installed
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PACK)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                             related_name="likeness_runs", help_text="The person a likeness model is of.")
    slug = models.SlugField(help_text="The slug of the pack it makes.")
    name = models.CharField(max_length=100, help_text="The pack's English name (pack.toml [names] en).")
    description = models.CharField(max_length=300, blank=True,
                                   help_text="The pack's English description (pack.toml [descriptions] en).")
    caption = models.CharField(max_length=500, help_text="The caption of pictures without a .txt beside them; "
                                                         "the pack's prompt is '{subject}, <caption>'.")
    base_family = models.CharField(max_length=20)
    source = models.CharField(max_length=500, help_text="The folder the pictures came from.")
    samples = models.JSONField(default=list, help_text="[{file, caption}] in the run's folder.")
    settings = models.JSONField(default=dict, help_text="rank, steps, learning_rate, resolution, seed, ...")
    chunk_steps = models.PositiveIntegerField(default=50)
    replace = models.BooleanField(default=False, help_text="Replace an installed pack with this slug.")

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    step = models.PositiveIntegerField(default=0, help_text="Steps done and saved in the checkpoint.")
    current_step = models.PositiveIntegerField(default=0, help_text="The step the running chunk has reached.")
    total_steps = models.PositiveIntegerField()
    checkpoint = models.CharField(max_length=500, blank=True)
    losses = models.JSONField(default=list, help_text="The training loss of each step saved.")
    initial_loss = models.FloatField(null=True, blank=True, help_text="Loss on a fixed probe batch before training.")
    final_loss = models.FloatField(null=True, blank=True, help_text="The same after training.")
    pack_version = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    # A likeness model's LoRA, private under its owner's storage prefix, and what it was measured to do.
    lora_key = models.CharField(max_length=300, blank=True)
    consent_version = models.PositiveIntegerField(null=True, blank=True,
                                                  help_text="The likeness consent version it was trained under.")
    report = models.JSONField(default=dict, blank=True,
                              help_text="Likeness of pictures made with and without the model.")

    attempts = models.PositiveIntegerField(default=0, help_text="Tries of the current chunk.")
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.slug} ({self.status})"

    @property
    def folder(self) -> Path:
        """Where its pictures, encodings and checkpoints are (on a disk the web side and workers share)."""
        return settings.AVATAR_TRAINING_DIR / str(self.id)

    @property
    def progress(self) -> float:
        return min(1.0, max(self.step, self.current_step) / self.total_steps) if self.total_steps else 0.0

    @property
    def owner_id(self) -> uuid.UUID:
        """The person a likeness model is of (every likeness run has one)."""
        if self.user_id is None:
            raise ValueError(f"training run {self.id} has no owner")
        return self.user_id

    @property
    def is_likeness(self) -> bool:
        return self.kind == self.Kind.LIKENESS

    # A likeness run's prompts, as recorded in its settings when it started.
    @property
    def instance_token(self) -> str:
        return str(self.settings.get("instance_token", INSTANCE_TOKEN))

    @property
    def class_noun(self) -> str:
        return str(self.settings.get("class_noun", CLASS_NOUN))

    @property
    def class_prompt(self) -> str:
        return str(self.settings.get("class_prompt", CLASS_PROMPT))

    def remove_folder(self) -> None:
        """Its pictures, encodings and checkpoints (for a likeness model: latents of a person's face)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


def remove_run_folder_of(sender: type[TrainingRun], instance: TrainingRun, **kwargs: Any) -> None:
    """post_delete: a deleted run's pictures, encodings and checkpoints go with its row."""
    instance.remove_folder()
