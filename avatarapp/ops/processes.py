"""The processes a deployment runs, and how to start, wait for and stop them.

`serve`, the benchmarks (bench/) and the tests all start their web servers and workers
from these command lines and with these helpers, so there is one way to do it. Standard
library only: the web process imports this module, and it must stay free of torch.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

# --- Command lines -------------------------------------------------------------


def web_command(port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "avatarapp.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "4",
        "--access-logfile", "-", "--graceful-timeout", "5",
    ]


def worker_command(concurrency: int = 1, hostname: str = "gpu@%h", beat: bool = True,
                   loglevel: str | None = None, maintenance: bool | None = None) -> list[str]:
    """A GPU worker; with `beat`, it also runs the periodic reaper (one such worker per deployment).

    It takes the reaper's tasks (the maintenance queue) when it runs beat, or when `maintenance`
    says so: `serve` runs beat as a process of its own (`beat_command`) beside such a worker.
    It logs at `loglevel`, LOG_LEVEL by default; whoever waits for its " ready." line needs INFO.
    """
    takes_maintenance = beat if maintenance is None else maintenance
    command = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker",
        # `train`: style pack training chunks, taken between generation jobs (worker/app.py makes
        # both queues those of the worker's model family).
        "--queues", "gpu,train,maintenance" if takes_maintenance else "gpu,train",
        "--concurrency", str(concurrency), "--hostname", hostname, "--loglevel", loglevel or settings.LOG_LEVEL,
        "--without-gossip", "--without-mingle",
    ]
    if beat:
        command.append("--beat")  # its schedule file is CELERY_BEAT_SCHEDULE_FILENAME (AVATAR_BEAT_SCHEDULE)
    return command


def beat_pidfile(schedule: str | Path) -> Path:
    return Path(f"{schedule}.pid")


def beat_command(schedule: str | Path | None = None, loglevel: str | None = None) -> list[str]:
    """celery beat on its own, sending the reaper's and the retention sweep's tasks by name.

    It needs no model and no worker code (the web side's app, avatarapp.celery, knows the
    schedule and the routes). Its pidfile beside the schedule makes a second beat on the same
    schedule refuse to start while the first one lives (celery removes a pidfile whose process
    is gone), so two schedulers never run at once.
    """
    schedule = schedule or settings.CELERY_BEAT_SCHEDULE_FILENAME
    return [
        sys.executable, "-m", "celery", "-A", "avatarapp.celery", "beat",
        "--schedule", str(schedule), "--pidfile", str(beat_pidfile(schedule)),
        "--loglevel", loglevel or settings.LOG_LEVEL,
    ]


# --- Starting, waiting for and stopping them -------------------------------------


class ProcessFailed(RuntimeError):
    """A started process exited, or was not ready in time; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def url_answers(url: str, status: int = 200) -> bool:
    """Whether a GET of `url` answers with `status` now (False while nothing listens)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == status
    except urllib.error.HTTPError as e:
        return e.code == status
    except OSError:  # refused, reset, timed out: not up yet
        return False


def wait_until(ready: Callable[[], bool], what: str, timeout: float, process: LoggedProcess | None = None) -> None:
    """Poll `ready` until it is true; fail after `timeout` seconds, or as soon as `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.exited():
            raise ProcessFailed(f"{what} exited ({process.returncode}):\n{process.tail()}")
        if ready():
            return
        time.sleep(0.1)
    tail = f":\n{process.tail()}" if process is not None else ""
    raise ProcessFailed(f"{what} not ready after {timeout:.0f} s{tail}")


def stop_group(process: subprocess.Popen, timeout: float = 20) -> int | None:
    """SIGTERM to the process's whole group (gunicorn's or celery's children too), SIGKILL what is left.

    The process must have been started in its own session (`start_new_session=True`), so
    that its group is its own and nothing else is signalled.
    """

    def signal_group(signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass

    signal_group(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # The leader may be gone while a child it forked still runs (it keeps the group alive).
    signal_group(signal.SIGKILL)
    return process.wait()


class LoggedProcess:
    """A command started in its own session with its output in a log file; a context manager that stops it.

        with LoggedProcess(web_command(port), log_path, env=env) as web:
            web.wait_for_url(f"http://127.0.0.1:{port}/healthz", "gunicorn")
    """

    def __init__(self, command: list[str], log_path: Path, *, env: dict | None = None,
                 cwd: Path | None = None) -> None:
        self.command = command
        self.log_path = Path(log_path)
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def exited(self) -> bool:
        return self.process.poll() is not None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def wait_for_url(self, url: str, what: str, timeout: float = 60, status: int = 200) -> None:
        """Until a GET of `url` answers `status`."""
        wait_until(lambda: url_answers(url, status), what, timeout, self)

    def wait_for_log(self, text: str, what: str, timeout: float = 120) -> None:
        """Until `text` appears in the process's output (celery's " ready.", for example)."""
        wait_until(lambda: text in self.output(), what, timeout, self)

    def signal_group(self, signum: int) -> None:
        """A signal to the whole group, as the OOM killer or a Ctrl-C in a terminal would send it."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20) -> int | None:
        """Stop the whole group (see `stop_group`) and close the log; safe to call twice."""
        code = stop_group(self.process, timeout)
        self.log.close()
        return code

    def __enter__(self) -> LoggedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- Supervising them (`serve`) ---------------------------------------------------

RESTART_DELAY_MAX = 30.0  # seconds: the longest wait before starting a child that keeps dying


def restart_delay(failures: int) -> float:
    """The wait before starting again a child that died `failures` times in a row: 1, 2, 4, … 30 s."""
    return min(RESTART_DELAY_MAX, 2.0 ** max(0, failures - 1))


def describe_exit(returncode: int) -> str:
    """How a process ended, to follow its name: "was killed by SIGKILL", "exited with status 3"."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies left out), read from /proc (Linux)."""
    members: list[int] = []
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return members
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (command) state ppid pgrp ...": the command may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def kill_group(pgid: int, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process of group `pgid` and wait until none is left; the pids that were there.

    Safe after the group's leader was reaped: Linux hands out no pid that still names a group.
    """
    found = group_members(pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """For Popen's preexec_fn: on Linux the child gets SIGTERM when the process that started it
    dies in any way (SIGKILL included), so nothing `serve` started outlives it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class Supervised:
    """A process `serve` starts, watches and, if `restart`, starts again when it dies.

    Each runs in its own session, so its process group holds it and everything it forks (a
    worker's pool processes, gunicorn's workers) and nothing else: when it dies, killing its
    group leaves no orphan behind; and it gets SIGTERM when `serve` itself dies. Ctrl-C in a
    terminal reaches `serve` alone, which stops the children in order.
    """

    def __init__(self, name: str, command: list[str], *, restart: bool) -> None:
        self.name = name
        self.command = command
        self.restart = restart
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.failures = 0  # deaths in a row since it last settled
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, start_new_session=True, preexec_fn=_die_with_parent())
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.restart_at is None and self.process.poll() is None

    def died(self) -> int | None:
        """Its exit status if it has just been found dead (once per death), else None."""
        if self.process is None or self.restart_at is not None:
            return None
        return self.process.poll()

    def clear_up_and_schedule(self) -> tuple[float, list[int]]:
        """After a death: kill what is left of its group, and set when it starts again.

        Returns the delay and the pids of the group that were still alive (orphans in the making).
        """
        left = kill_group(self.pid)
        self.failures += 1
        delay = restart_delay(self.failures)
        self.restart_at = time.monotonic() + delay
        return delay, left

    def due(self, now: float) -> bool:
        return self.restart_at is not None and now >= self.restart_at

    def settled(self, now: float, after: float) -> bool:
        return self.running() and now - self.started_at >= after


def stop_all(children: list[Supervised], timeout: float = 15.0) -> None:
    """SIGTERM to each running child (gunicorn, celery: each stops its own processes), then, after
    `timeout` at the latest, SIGKILL whatever is left in their groups."""
    # Only those alive now: the group of one that died earlier was cleared then, and its pid may
    # since name somebody else's group.
    alive = [child.process for child in children if child.process is not None and child.process.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in alive:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in alive:
        kill_group(process.pid)
        process.wait()
