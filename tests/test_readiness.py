"""A real worker makes the site ready once it is warm, keeps saying so, and takes it back when it stops."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.test import Client

from avatarapp.ops.models import WorkerStatus
from tests.conftest import WorkerProcess, database_url_for_tests
from tests.helpers import purge_queue, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_warm_worker_makes_readyz_ready_until_it_stops(tmp_path):
    client = Client()
    # A worker an earlier module stopped may have left a row that is still fresh (a pool process
    # writing it back during the warm shutdown); it goes stale within AVATAR_WORKER_STALE_AFTER.
    wait_until(lambda: not WorkerStatus.objects.fresh().exists(), settings.AVATAR_WORKER_STALE_AFTER + 10,
               "rows of earlier workers to go stale")
    assert client.get("/readyz").status_code == 503
    purge_queue()
    # A short staleness window, so the worker's heartbeat shows within a second or two.
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), AVATAR_WORKER_STALE_AFTER="3")
    worker = WorkerProcess(tmp_path / "worker.log", env)
    try:
        worker.wait_ready()
        # The worker says " ready." only once its engine is warm and recorded.
        assert client.get("/readyz").status_code == 200
        status = WorkerStatus.objects.get()
        assert status.hostname.startswith(f"test-{os.getpid()}@")
        assert status.pid != worker.process.pid  # the pool process that holds the engine, not celery's main
        assert (status.family, status.base_model) == ("demo", settings.AVATAR_BASE_MODEL)
        wait_until(lambda: WorkerStatus.objects.get(pk=status.pk).seen_at > status.seen_at, 15,
                   "the worker to refresh its status row")
    finally:
        worker.stop()
    assert not WorkerStatus.objects.exists(), list(WorkerStatus.objects.values())
    assert client.get("/readyz").status_code == 503
