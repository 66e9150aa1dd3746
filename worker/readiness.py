"""What a generation worker tells the rest of the site about itself.

A worker process whose engine is warm records a WorkerStatus row (avatarapp.ops) and
keeps it fresh from a daemon thread; /readyz counts fresh rows. The row goes when the
process stops cleanly and goes stale when it does not, so a killed worker stops counting
within AVATAR_WORKER_STALE_AFTER seconds without anyone cleaning up after it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from avatarapp.ops.models import WorkerStatus
from worker.engine import Engine

log = logging.getLogger(__name__)


def status_fields(engine: Engine) -> dict[str, Any]:
    """What this process tells the site it holds: its model, and the packs resident on it."""
    return {"family": engine.family, "base_model": engine.base_model, "model_name": Path(engine.base_model).name,
            "packs": dict(engine.loaded_packs)}


def record_warm(hostname: str, engine: Engine) -> None:
    """This process has its engine loaded and warm: count it as ready."""
    now = timezone.now()
    WorkerStatus.objects.update_or_create(
        hostname=hostname, pid=os.getpid(), defaults={**status_fields(engine), "ready_at": now, "seen_at": now},
    )
    # Rows of this worker's pool processes that died without a word (an out-of-memory kill)
    # count for nothing any more; tidy them away.
    stale = WorkerStatus.objects.filter(hostname=hostname).exclude(pk__in=WorkerStatus.objects.fresh().values("pk"))
    stale.delete()


def forget(hostname: str, pid: int | None = None) -> None:
    """Remove the rows of one process, or of every process of the worker `hostname`."""
    rows = WorkerStatus.objects.filter(hostname=hostname)
    if pid is not None:
        rows = rows.filter(pid=pid)
    rows.delete()


class Heartbeat(threading.Thread):
    """Refreshes this process's row a few times per staleness window while the process lives.

    A daemon thread: it must never keep a stopping worker alive, and it dies with the
    process when the process is killed, which is exactly when the row should go stale.
    """

    def __init__(self, hostname: str, engine: Engine):
        super().__init__(name="worker-heartbeat", daemon=True)
        self.hostname = hostname
        self.engine = engine
        self.interval = settings.AVATAR_WORKER_STALE_AFTER / 3
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                # The packs too: a pack installed since start is loaded by its first job.
                updated = WorkerStatus.objects.filter(hostname=self.hostname, pid=os.getpid()).update(
                    seen_at=timezone.now(), packs=dict(self.engine.loaded_packs))
                if not updated and not self.stopped.is_set():
                    # Removed from outside (a flushed test database, say) while this process is warm: put it back.
                    record_warm(self.hostname, self.engine)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the thread; the row goes stale instead
                log.warning("could not refresh this worker's status row", exc_info=True)
            finally:
                # Hold no connection between beats: it would pin an old SQLite snapshot, or a
                # PostgreSQL connection slot, for nothing.
                connections.close_all()

    def stop(self) -> None:
        """Stop beating, and wait for a write under way, so no row comes back after it is removed."""
        self.stopped.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)
