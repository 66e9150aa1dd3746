"""A style pack being trained: the row is the source of truth for the run, as a job's row is for a job.

The worker trains in chunks (worker/training/chunks.py). Each chunk claims the row by a
conditional update (queued at step N → running), writes its progress and heartbeat to it,
and at its end records the new checkpoint and step and queues the next chunk, so a message
delivered twice, or one for a step already done, does nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"  # the next chunk (from `step`) waits for a worker
        RUNNING = "running"  # a worker runs a chunk from `step`
        SUCCEEDED = "succeeded"  # the pack is installed
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
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
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)
