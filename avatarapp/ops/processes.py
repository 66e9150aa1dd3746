"""The processes a deployment runs, and how to start, wait for and stop them.

`serve`, the benchmarks (bench/) and the tests all start their web servers and workers
from these command lines and with these helpers, so there is one way to do it. Standard
library only: the web process imports this module, and it must stay free of torch.
"""

from __future__ import annotations

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
                   loglevel: str | None = None) -> list[str]:
    """A GPU worker; with `beat`, it also runs the periodic reaper (one such worker per deployment).

    It logs at `loglevel`, LOG_LEVEL by default; whoever waits for its " ready." line needs INFO.
    """
    command = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker",
        "--queues", "gpu,maintenance" if beat else "gpu",
        "--concurrency", str(concurrency), "--hostname", hostname, "--loglevel", loglevel or settings.LOG_LEVEL,
        "--without-gossip", "--without-mingle",
    ]
    if beat:
        command.append("--beat")  # its schedule file is CELERY_BEAT_SCHEDULE_FILENAME (AVATAR_BEAT_SCHEDULE)
    return command


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
