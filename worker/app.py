"""Entry point of a GPU worker: ``celery -A worker.app worker -Q gpu``.

It sets Django up (the job row lives in its database), registers the tasks,
and warms the diffusion engine in each worker process before the first job.
"""

from __future__ import annotations

import logging
import os

import django
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")
django.setup()

from avatarapp.celery import app  # noqa: E402
import worker.tasks  # noqa: E402,F401  (registers the tasks)

log = logging.getLogger(__name__)


@worker_process_init.connect
def warm_engine(**kwargs) -> None:
    from worker.packs import ensure_packs_loaded
    from worker.engine import get_engine

    from django.db import connections

    try:
        engine = get_engine()
        ensure_packs_loaded(engine)
        engine.warm_up()
    except Exception:
        # The task reports a broken model on the job row; the worker stays up.
        log.exception("could not warm the engine")
    finally:
        # Tasks open their own connections; one held from start-up could pin an old
        # SQLite snapshot and hide jobs created since.
        connections.close_all()


__all__ = ["app"]
