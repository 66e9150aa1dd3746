"""The Celery app as the web process sees it: a sender only.

The web side enqueues job ids by task name, so it never imports the worker's
modules (and with them torch). Routes live in settings (CELERY_TASK_ROUTES).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")

app = Celery("chhavi")
app.config_from_object("django.conf:settings", namespace="CELERY")

GENERATE_TASK = "worker.tasks.generate_job"
RENDER_PREVIEWS_TASK = "worker.tasks.render_pack_previews"
# Generation jobs go to one queue per model family (gpu.demo, gpu.sd15, gpu.sdxl): a worker
# consumes only its own model's queue, so it never takes a job whose pack it cannot run.
GENERATION_QUEUE = "gpu"


def generation_queue(family: str) -> str:
    """The queue of the workers that run `family` models."""
    return f"{GENERATION_QUEUE}.{family}"
