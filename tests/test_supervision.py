"""`make run` (`manage.py serve`) outlives its worker: kill -9 the worker and the site stays up,
a new worker gets warm, beat keeps running once, and nothing the dead worker started lives on.

`serve` runs here for real, as a subprocess on a spare port, on the test database; the process
table is read from /proc. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from avatarapp.ops.processes import LoggedProcess, beat_command, free_port
from tests.conftest import ROOT, database_url_for_tests
from tests.helpers import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table from /proc"),
]

START_TIMEOUT = 300  # two shared cores, with CI running beside: a worker loads the demo model in this


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command line) of every live process (zombies left out)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return table


def children(pid: int, *words: str) -> list[int]:
    return sorted(p for p, (ppid, _, cmd) in process_table().items()
                  if ppid == pid and all(w in cmd for w in words))


def in_group(pgid: int) -> list[int]:
    return sorted(p for p, (_, group, _) in process_table().items() if group == pgid)


def beats(schedule: Path) -> list[int]:
    """Every celery beat on this schedule, whoever started it."""
    return sorted(p for p, (_, _, cmd) in process_table().items()
                  if "celery" in cmd and " beat " in cmd and str(schedule) in cmd)


def only(pids: list[int], what: str) -> int:
    assert len(pids) == 1, f"expected one {what}, found {pids}"
    return pids[0]


class HealthPoller(threading.Thread):
    """GETs /healthz every 0.1 s until stopped, keeping every answer that was not a 200."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.polls = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status != 200:
                        self.failures.append(str(response.status))
            except (urllib.error.URLError, OSError) as e:
                self.failures.append(repr(e))
            self.polls += 1
            self.halt.wait(0.1)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


@pytest.fixture
def serve(tmp_path):
    """`manage.py serve` on a spare port with its own beat schedule; stopped (and checked) at the end."""
    port = free_port()
    schedule = tmp_path / "beat-schedule"
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), PORT=str(port), AVATAR_BEAT_SCHEDULE=str(schedule),
               PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    process = LoggedProcess([sys.executable, "manage.py", "serve"], tmp_path / "serve.log", env=env, cwd=ROOT)
    process.port, process.schedule, process.env = port, schedule, env  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        groups = {group for p, (ppid, group, _) in process_table().items() if ppid == process.pid}
        process.stop()
        for group in groups:  # should the test have failed half-way
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_killed_worker_is_started_again_while_the_site_stays_up_with_one_beat(serve):
    schedule: Path = serve.schedule
    serve.wait_for_log("Chhavi is ready on", "serve", timeout=START_TIMEOUT)
    # serve sees the worker warm (its status row) a moment before celery prints its ready line;
    # kill it only once it said so, or the count below would miss the first line.
    wait_until(lambda: serve.output().count(" ready.") >= 1, 60, "celery's ready line of the first worker")
    worker = only(children(serve.pid, "celery", "worker.app", " worker "), "worker under serve")
    web = only(children(serve.pid, "gunicorn"), "web server under serve")
    beat = only(beats(schedule), "beat")
    assert process_table()[beat][0] == serve.pid
    assert len(in_group(worker)) >= 2, "the worker's pool process shares its group"

    poller = HealthPoller(f"http://127.0.0.1:{serve.port}/healthz")
    poller.start()
    try:
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: "Chhavi is ready again on" in serve.output(), START_TIMEOUT, "a new warm worker")
    finally:
        poller.stop()
    wait_until(lambda: serve.output().count(" ready.") >= 2, 60, "celery's ready line of the new worker")
    new_worker = only(children(serve.pid, "celery", "worker.app", " worker "), "worker under serve")
    assert new_worker != worker
    # The site never stopped answering.
    assert poller.polls >= 10
    assert poller.failures == []
    assert children(serve.pid, "gunicorn") == [web]
    # Nothing of the killed worker lives on, and one scheduler runs, serve's own.
    assert in_group(worker) == []
    assert beats(schedule) == [beat]
    assert process_table()[beat][0] == serve.pid

    # A second beat on the same schedule refuses to start while the first one lives.
    second = subprocess.run(beat_command(schedule), cwd=ROOT, env=serve.env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode != 0
    assert "already exists" in second.stdout + second.stderr
    assert beats(schedule) == [beat]

    # Ctrl-C stops everything.
    groups = {web, new_worker, beat}
    serve.process.send_signal(signal.SIGINT)
    serve.process.wait(timeout=60)
    assert serve.process.returncode == 0, serve.tail()
    assert "Stopped." in serve.output()
    assert [p for p, (_, group, _) in process_table().items() if group in groups] == []
    assert beats(schedule) == []


def test_nothing_outlives_serve_when_it_is_killed(serve):
    """Even SIGKILL, which serve cannot act on: each child is told (SIGTERM) when its parent dies."""
    wait_until(lambda: len(children(serve.pid)) >= 3 and beats(serve.schedule), 120,
               "serve to start its web server, worker and beat")
    groups = set(children(serve.pid))
    os.kill(serve.pid, signal.SIGKILL)
    serve.process.wait()
    wait_until(lambda: not [p for p, (_, group, _) in process_table().items() if group in groups], 120,
               "the children of serve to stop")
    assert beats(serve.schedule) == []
