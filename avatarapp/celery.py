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
MAKE_CARD_TASK = "worker.tasks.make_share_card"  # on the maintenance queue (the default queue)
# Generation jobs go to one queue per model family (gpu.demo, gpu.sd15, gpu.sdxl): a worker
# consumes only its own model's queue, so it never takes a job whose pack it cannot run.
GENERATION_QUEUE = "gpu"


def generation_queue(family: str) -> str:
    """The queue of the workers that run `family` models."""
    return f"{GENERATION_QUEUE}.{family}"


# Style pack training (avatarapp/training, worker/training): one task per chunk of steps, on the
# `train.<family>` queue of the workers that run that family's model. A generation worker takes it
# too (`--queues gpu,train`), so on a one-GPU box jobs run between chunks.
TRAIN_CHUNK_TASK = "worker.tasks.train_chunk"
TRAIN_QUEUE = "train"


def train_queue(family: str) -> str:
    """The queue of the training chunks for `family` models."""
    return f"{TRAIN_QUEUE}.{family}"
