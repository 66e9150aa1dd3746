"""Run the web server, one worker and the beat scheduler together, as `make run` does.

It says "ready" only once the site answers and /readyz is 200, that is once the worker
has its model loaded and warm, so the first picture someone asks for starts at once.
Until then it shows what it is waiting for.

Supervision (avatarapp.ops.processes.Supervised): each child runs in its own process group.

- The worker, once it has been ready, is started again when it dies (after 1, 2, 4 … 30 s;
  the count starts over once it has been up and the site ready for a minute), and the web
  server keeps serving meanwhile. Its whole group is killed first, so no pool process of the
  dead worker lives on, and its status rows are removed, so /readyz says "no warm worker"
  until the new one is warm. A worker that stops before it was ever ready (no model, a
  model that does not load) stops everything instead: starting it again would fail the same
  way, and its output says why.
- Beat runs as a process of its own, with a pidfile beside its schedule, and is started again
  when it dies: one scheduler, never two, never an orphan.
- The web server dying stops everything: gunicorn already starts its own request processes
  again when they die, so its master exiting means something is wrong with the setup (the
  port is taken, the configuration does not load, someone stopped it), which a restart loop
  would only hide; the status and the message say which.
- Ctrl-C (SIGINT), SIGTERM or SIGHUP stops them all; and should `serve` itself be killed,
  each child gets SIGTERM (Linux), so nothing is left running behind the terminal.
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from types import FrameType

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from avatarapp.ops.models import WorkerStatus, only_demo_model
from avatarapp.ops.processes import (
    Supervised,
    beat_command,
    describe_exit,
    kill_group,
    stop_all,
    url_answers,
    web_command,
    worker_command,
)

CHECK_EVERY = 0.5  # seconds between two looks while waiting
READYZ_EVERY = 2.0  # seconds between two requests to /readyz, each one a line in the access log
REPEAT_EVERY = 10.0  # seconds before the same "waiting for" line is shown again
SETTLED_AFTER = 60.0  # seconds up (and the site ready) after which a child's restart count starts over


def readiness(url: str) -> dict[str, str] | None:
    """The checks /readyz reports (200 and 503 both carry them), or None while nothing answers."""
    try:
        # /readyz gives up on an unreachable Redis within a second or two; give it the time.
        with urllib.request.urlopen(url, timeout=5) as response:
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


def forget_worker(hostname: str) -> None:
    """Remove the status rows of a worker that died without a word, so /readyz stops counting it
    at once (not only once its rows go stale); its next start would remove them too."""
    try:
        WorkerStatus.objects.filter(hostname=hostname).delete()
    except DatabaseError:
        pass  # they go stale within AVATAR_WORKER_STALE_AFTER
    finally:
        connections.close_all()


class Command(BaseCommand):
    help = "Serve the site on 127.0.0.1:$PORT (default 8000) with one generation worker and the beat scheduler."

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def handle(self, *args: object, **options: object) -> None:
        port = settings.PORT
        site = f"http://127.0.0.1:{port}/"
        worker_name = f"gpu@{socket.gethostname()}"
        web = Supervised("web server", web_command(port), restart=False)
        worker = Supervised("worker", worker_command(hostname=worker_name, beat=False, maintenance=True),
                            restart=True)
        beat = Supervised("beat scheduler", beat_command(), restart=True)
        children = [web, worker, beat]
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        started = time.monotonic()
        ready = False
        ready_since = 0.0
        was_ready = False  # the worker has been warm once: from then on it is started again if it dies
        waiting = Readiness(site)
        next_check = 0.0
        last_note, last_note_at = "", 0.0
        fatal: Supervised | None = None  # the child whose exit stops everything
        try:
            for child in children:
                child.start()
            self.say(f"Chhavi is starting on {site} (Ctrl-C stops it)")
            while not stopping:
                now = time.monotonic()
                for child in children:
                    code = child.died()
                    if code is not None:
                        if not child.restart or (child is worker and not was_ready):
                            kill_group(child.pid)  # what it started, before its pid is handed out again
                            fatal = child
                            break
                        delay, left = child.clear_up_and_schedule()
                        if child is worker:
                            forget_worker(worker_name)
                            ready, waiting, started = False, Readiness(site), now
                        orphans = f"; stopped {len(left)} process(es) it left" if left else ""
                        self.say(self.style.WARNING(
                            f"The {child.name} {describe_exit(code)}{orphans}; starting it again in {delay:.0f} s"))
                    elif child.due(now):
                        child.start()
                        self.say(f"  started the {child.name} again (pid {child.pid})")
                if fatal is not None:
                    break
                if not ready and now >= next_check:
                    note = waiting.missing()
                    if note is None:
                        ready, ready_since = True, now
                        again = " again" if was_ready else ""
                        self.say(self.style.SUCCESS(
                            f"Chhavi is ready{again} on {site} after {now - started:.0f} s (Ctrl-C stops it)"))
                        if not was_ready and runs_only_demo_model():
                            self.say(self.style.WARNING(DEMO_ONLY_NOTE))
                        was_ready = True
                    elif note != last_note or now - last_note_at >= REPEAT_EVERY:
                        self.say(f"  waiting for {note} ({now - started:.0f} s)")
                        last_note, last_note_at = note, now
                    next_check = now + CHECK_EVERY
                if ready and now - ready_since >= SETTLED_AFTER:
                    for child in children:
                        if child.settled(now, SETTLED_AFTER):
                            child.failures = 0
                time.sleep(0.2)
        finally:
            stop_all(children)
        self.say("Stopped.")
        if fatal is not None and fatal.process is not None:
            when = "" if was_ready else " before Chhavi was ready"
            raise CommandError(f"the {fatal.name} {describe_exit(fatal.process.returncode)}{when}; "
                               "its output above says why")
