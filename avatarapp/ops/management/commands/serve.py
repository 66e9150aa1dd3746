"""Run the web server and one worker together, as `make run` does.

It says "ready" only once the site answers and /readyz is 200, that is once the worker
has its model loaded and warm, so the first picture someone asks for starts at once.
Until then it shows what it is waiting for.

Ctrl-C (SIGINT to the process group) or SIGTERM stops both; if either dies,
the other is stopped too, so nothing is left running behind the terminal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from types import FrameType

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from avatarapp.ops.models import WorkerStatus, only_demo_model
from avatarapp.ops.processes import url_answers, web_command, worker_command

CHECK_EVERY = 0.5  # seconds between two looks while waiting
READYZ_EVERY = 2.0  # seconds between two requests to /readyz, each one a line in the access log
REPEAT_EVERY = 10.0  # seconds before the same "waiting for" line is shown again


def readiness(url: str) -> dict[str, str] | None:
    """The checks /readyz reports (200 and 503 both carry them), or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    except OSError:  # refused, reset, timed out: the web server is not up yet
        return None
    try:
        return json.loads(body)["checks"]
    except (ValueError, KeyError, TypeError):
        return {"readyz": "unexpected answer"}


def worker_is_warm() -> bool | None:
    """Whether a warm worker has recorded itself, read from the database (None if it cannot be read)."""
    try:
        return WorkerStatus.objects.fresh().exists()
    except DatabaseError:
        return None
    finally:
        connections.close_all()  # an open SQLite read would keep seeing the old snapshot


class Readiness:
    """What Chhavi is still waiting for, asked of the web server as seldom as possible.

    Every request shows up in the server's access log, in the same terminal; so it waits
    for /healthz, then for the worker's row in the database, and only then asks /readyz,
    whose 200 is what "ready" means.
    """

    def __init__(self, site: str):
        self.site = site
        self.web_up = False
        self.readyz_next = 0.0
        self.readyz_note = ""

    def missing(self) -> str | None:
        """None once /readyz says 200; otherwise what is not ready yet, in a few words."""
        if not self.web_up:
            if not url_answers(f"{self.site}healthz"):
                return "the web server"
            self.web_up = True
        if worker_is_warm() is False:
            return "the worker to load its model and warm up"
        if time.monotonic() < self.readyz_next:
            return self.readyz_note
        self.readyz_next = time.monotonic() + READYZ_EVERY
        checks = readiness(f"{self.site}readyz")
        if checks is None:
            self.readyz_note = "the web server"
        elif all(state == "ok" for state in checks.values()):
            return None
        else:
            self.readyz_note = ", ".join(f"{name} ({state})" for name, state in checks.items() if state != "ok")
        return self.readyz_note


DEMO_ONLY_NOTE = (
    "Only the demo model is running: its pictures are abstract colour fields, not portraits.\n"
    "  Get a real model: `make model NAME=sd15` (online) or `python manage.py import_model PATH` (air-gapped),\n"
    "  then start again with AVATAR_BASE_MODEL=sd15 (see `python manage.py fetch_model --list`)."
)


def runs_only_demo_model() -> bool:
    try:
        return only_demo_model()
    except DatabaseError:
        return False
    finally:
        connections.close_all()


class Command(BaseCommand):
    help = "Serve the site on 127.0.0.1:$PORT (default 8000) with one generation worker."

    def handle(self, *args: object, **options: object) -> None:
        port = settings.PORT
        site = f"http://127.0.0.1:{port}/"
        children = {
            "web server": subprocess.Popen(web_command(port)),
            "worker": subprocess.Popen(worker_command()),
        }
        self.stdout.write(f"Chhavi is starting on {site} (Ctrl-C stops it)")
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        started = time.monotonic()
        ready = False
        waiting = Readiness(site)
        next_check = 0.0
        last_note, last_note_at = "", 0.0
        exited = None  # the child that stopped on its own, which stops everything
        try:
            while not stopping:
                exited = next((name for name, child in children.items() if child.poll() is not None), None)
                if exited is not None:
                    break
                now = time.monotonic()
                if not ready and now >= next_check:
                    note = waiting.missing()
                    if note is None:
                        ready = True
                        self.stdout.write(self.style.SUCCESS(
                            f"Chhavi is ready on {site} after {now - started:.0f} s (Ctrl-C stops it)"))
                        if runs_only_demo_model():
                            self.stdout.write(self.style.WARNING(DEMO_ONLY_NOTE))
                    elif note != last_note or now - last_note_at >= REPEAT_EVERY:
                        self.stdout.write(f"  waiting for {note} ({now - started:.0f} s)")
                        last_note, last_note_at = note, now
                    next_check = now + CHECK_EVERY
                time.sleep(0.2)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        self.stdout.write("Stopped.")
        if exited is not None:
            when = "" if ready else " before Chhavi was ready"
            raise CommandError(f"the {exited} exited with status {children[exited].returncode}{when}; "
                               "its output above says why")
