from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerStatusQuerySet(models.QuerySet):
    def fresh(self) -> WorkerStatusQuerySet:
        """Workers that reported within AVATAR_WORKER_STALE_AFTER seconds: alive and warm."""
        stale_before = timezone.now() - timedelta(seconds=settings.AVATAR_WORKER_STALE_AFTER)
        return self.filter(seen_at__gte=stale_before)


class WorkerStatus(models.Model):
    """A generation worker process whose engine is loaded and warm, as /readyz sees it.

    The worker process writes its row once the base model, its packs and a warm-up run
    are done, refreshes `seen_at` every few seconds while it lives, and deletes the row
    when it stops cleanly. A process that dies without saying so leaves a row that goes
    stale, so readiness never depends on a clean shutdown. The row also says what the
    process holds: its model's family and name, and the packs resident on it.
    """

    hostname = models.CharField(max_length=255)  # Celery's node name, gpu@host
    pid = models.PositiveIntegerField()
    family = models.CharField(max_length=16)  # demo, sd15, sdxl
    base_model = models.CharField(max_length=1024)
    model_name = models.CharField(max_length=255, blank=True)  # the model folder's name: demo, sd15, ...
    packs = models.JSONField(default=dict, blank=True)  # slug -> version resident on its engine
    ready_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    objects = WorkerStatusQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hostname", "pid"], name="one_status_per_worker_process")]

    def __str__(self) -> str:
        return f"{self.hostname} pid {self.pid} ({self.family})"


def live_families() -> set[str]:
    """The model families some warm worker runs right now (demo, sd15, sdxl)."""
    return set(WorkerStatus.objects.fresh().values_list("family", flat=True).distinct())


def only_demo_model() -> bool:
    """Warm workers run, and every one of them runs the demo model: the site makes no real portraits."""
    return live_families() == {"demo"}
