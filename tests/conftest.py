"""Fixtures: the demo packs registered in the test database, and a real Celery worker.

The worker is a separate process (`celery -A worker.app worker`) on the real
broker, Redis when REDIS_URL is set, kombu's filesystem transport otherwise,
reading and writing the same test database as the tests.

Every worker started here has its own hold file (AVATAR_HOLD_FILE, normally
absent): inside ``with worker.hold_jobs():`` a running job pauses after writing
the progress of each denoising step, so a test can look at a job mid-run, cancel
it or kill its worker without racing the clock.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import purge_queue

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def packs(db):
    from datetime import timedelta

    from django.utils import timezone

    from avatarapp.ops.models import WorkerStatus
    from avatarapp.packs.registry import sync_packs

    registered, _ = sync_packs()
    assert {"cinematic", "avatar"} <= set(registered), "run `make prepare` first"
    # The site offers a pack only while a warm worker of its family lives: stand in for the demo
    # worker's record (a real worker started by a test writes its own).
    WorkerStatus.objects.create(hostname="stand-in@tests", pid=1, family="demo", base_model="demo",
                                ready_at=timezone.now(), seen_at=timezone.now() + timedelta(hours=1))
    return registered


def database_url_for_tests() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "") + "@" if s["USER"] else ""
    return f"postgres://{auth}{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class WorkerProcess:
    def __init__(self, log_path: Path, env: dict, name: str = "test", beat: bool = True):
        """A worker named `name` (two workers of one test need two names); only one may run `beat`."""
        from avatarapp.ops.processes import worker_command

        self.log_path = log_path
        self.hold_file = log_path.with_suffix(".hold")
        self.hold_file.unlink(missing_ok=True)
        self.log = log_path.open("w")
        self.hostname = f"{name}-{os.getpid()}@{socket.gethostname()}"
        self.process = subprocess.Popen(worker_command(hostname=self.hostname, beat=beat), cwd=ROOT,
                                        env={**env, "AVATAR_HOLD_FILE": str(self.hold_file)},
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @contextmanager
    def hold_jobs(self) -> Iterator[None]:
        """Inside the block, this worker's running jobs stop after each step's progress write
        (and leave the loop if cancelled meanwhile); leaving the block lets them go on."""
        self.hold_file.touch(exist_ok=False)
        try:
            yield
        finally:
            self.hold_file.unlink(missing_ok=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            if " ready." in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def waiting_to_store(self) -> bool:
        """True while a job waits at the hold before storing its pictures."""
        return self.hold_file.with_suffix(".hold.store.waiting").exists()

    @contextmanager
    def hold_before_storing(self) -> Iterator[None]:
        """Inside this block a job that finished denoising waits before storing its pictures."""
        store_hold = self.hold_file.with_suffix(".hold.store")
        store_hold.touch(exist_ok=False)
        try:
            yield
        finally:
            store_hold.unlink(missing_ok=True)

    def stop(self) -> None:
        self.hold_file.with_suffix(".hold.store").unlink(missing_ok=True)
        self.hold_file.unlink(missing_ok=True)  # a held job would keep a warm shutdown waiting
        if self.process.poll() is None:
            # SIGTERM to the main process only, as an operator's `kill` does: it shuts its pool and
            # beat down in order. Sent to the whole group, the pool process dies at once and the
            # main process starts (and warms) a new one during its shutdown, which costs seconds.
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever of its group outlived it
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real worker process for the tests of one module."""
    with django_db_blocker.unblock():
        env = dict(os.environ, DATABASE_URL=database_url_for_tests())
        purge_queue()
    process = WorkerProcess(tmp_path_factory.mktemp("worker") / "worker.log", env)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
