from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models


class Job(models.Model):
    """One request to turn a photo into `count` images with one style pack.

    The row is the source of truth: the web side creates it and enqueues only
    its id; the worker claims it with a conditional update and writes progress,
    outputs and the outcome here.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    photo = models.ForeignKey("photos.Photo", on_delete=models.SET_NULL, null=True, related_name="jobs")
    pack = models.ForeignKey("packs.StylePack", on_delete=models.PROTECT, related_name="jobs")
    count = models.PositiveSmallIntegerField(default=1)
    seed = models.BigIntegerField()
    # A quick preview with the pack's few-step sampler (its [fast] mode).
    preview = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def queue_position(self) -> int | None:
        return queue_position(self.status, self.created_at)


def queue_position(status: str, created_at: datetime) -> int | None:
    """1 for the next job a worker takes; None once the job left the queue."""
    if status != Job.Status.QUEUED:
        return None
    return Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=created_at).count() + 1


class Output(models.Model):
    """One generated image, stored under the owner's prefix."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()
    storage_key = models.CharField(max_length=255)
    thumbnail_key = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=40, default="image/webp")
    size_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "index"]
        # One output per position in a job: a repeated task updates, never duplicates.
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_output_per_job_index")]

    def __str__(self) -> str:
        return f"output {self.id}"
