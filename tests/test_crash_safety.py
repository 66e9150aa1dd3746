"""Workers die and brokers restart; every job still ends once, with one set of pictures.

These tests run their own redis-server on a spare port (never the machine's
shared one) and real worker processes against it, and kill them for real. A
job is caught mid-run by holding its worker (``worker.hold_jobs()``), never by
racing the clock.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest
from celery import Celery

from avatarapp.jobs.models import Job, Output
from avatarapp.packs.models import StylePack
from tests.conftest import WorkerProcess, database_url_for_tests
from tests.helpers import consenting_guest_with_photo, free_port, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
FINAL = {Job.Status.SUCCEEDED, Job.Status.FAILED}


class OwnRedis:
    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.listening, 10, f"redis-server to listen on port {self.port}")

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server():
    server = OwnRedis(free_port())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def start_worker(redis_server, tmp_path):
    started = []

    def start() -> WorkerProcess:
        env = dict(os.environ, DATABASE_URL=database_url_for_tests(), REDIS_URL=redis_server.url,
                   AVATAR_HEARTBEAT_TIMEOUT="3", AVATAR_REAPER_INTERVAL="1", AVATAR_REQUEUE_AFTER="3",
                   AVATAR_BEAT_SCHEDULE=str(tmp_path / f"beat-{len(started)}"))
        worker = WorkerProcess(tmp_path / f"worker-{len(started)}.log", env)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


def make_jobs(n: int, count: int) -> list[Job]:
    user, photo = consenting_guest_with_photo()
    pack = StylePack.objects.get(slug="cinematic")
    return [Job.objects.create(user=user, photo=photo, pack=pack, count=count, seed=i) for i in range(n)]


def send(redis_url: str, jobs: list[Job]) -> None:
    sender = Celery(broker=redis_url)
    for job in jobs:
        sender.send_task("worker.tasks.generate_job", args=[str(job.id)], queue="gpu.demo")
        Job.objects.filter(id=job.id).update(enqueued_at=job.created_at)


def assert_all_ended_once(jobs: list[Job]) -> None:
    ids = [job.id for job in jobs]
    wait_until(lambda: set(Job.objects.filter(id__in=ids).values_list("status", flat=True)) <= FINAL, 150,
               "every job to end")
    for job in Job.objects.filter(id__in=ids):
        outputs = Output.objects.filter(job=job)
        if job.status == Job.Status.SUCCEEDED:
            assert outputs.count() == job.count
            assert sorted(outputs.values_list("index", flat=True)) == list(range(job.count))
        else:
            assert job.error_code
        assert job.attempts <= 3


def test_a_job_whose_worker_is_killed_mid_run_is_finished_by_another(packs, redis_server, start_worker):
    first = start_worker()
    [job] = make_jobs(1, count=4)
    with first.hold_jobs():
        send(redis_server.url, [job])
        wait_until(lambda: Job.objects.get(id=job.id).progress > 0, 90, "the job to start denoising")

        os.killpg(first.process.pid, signal.SIGKILL)  # the whole worker, as the OOM killer would
        first.process.wait()
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and 0 < job.progress < 1
    assert not Output.objects.filter(job=job).exists()

    start_worker()
    assert_all_ended_once([job])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 2


def test_jobs_survive_a_broker_restart_mid_run(packs, redis_server, start_worker):
    worker = start_worker()
    jobs = make_jobs(4, count=2)
    with worker.hold_jobs():
        send(redis_server.url, jobs)
        wait_until(lambda: Job.objects.filter(id__in=[j.id for j in jobs], progress__gt=0).exists(), 90,
                   "a job to start denoising")

        # The broker dies with the queued messages in it, and comes back empty.
        redis_server.kill()
        wait_until(lambda: "Connection to broker lost" in worker.log_path.read_text(), 30,
                   "the worker to notice the broker is gone")
        redis_server.start()
        assert Job.objects.filter(id__in=[j.id for j in jobs], status=Job.Status.RUNNING).exists()

    assert_all_ended_once(jobs)
    assert Job.objects.filter(id__in=[j.id for j in jobs], status=Job.Status.SUCCEEDED).count() == 4
