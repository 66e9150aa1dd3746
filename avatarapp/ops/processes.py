"""Command lines of the processes a deployment runs, shared by `serve` and the tests."""

from __future__ import annotations

import os
import sys


def web_command(port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "avatarapp.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "4",
        "--access-logfile", "-", "--graceful-timeout", "5",
    ]


def worker_command(concurrency: int = 1, hostname: str = "gpu@%h", beat: bool = True) -> list[str]:
    """A GPU worker; with `beat`, it also runs the periodic reaper (one such worker per deployment)."""
    command = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker",
        "--queues", "gpu,maintenance" if beat else "gpu",
        "--concurrency", str(concurrency), "--hostname", hostname, "--loglevel", os.getenv("LOG_LEVEL", "INFO"),
        "--without-gossip", "--without-mingle",
    ]
    if beat:
        command.append("--beat")  # its schedule file is CELERY_BEAT_SCHEDULE_FILENAME (AVATAR_BEAT_SCHEDULE)
    return command
