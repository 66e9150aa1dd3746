"""Run the web server and one worker together, as `make run` does.

Ctrl-C (SIGINT to the process group) or SIGTERM stops both; if either dies,
the other is stopped too, so nothing is left running behind the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from django.core.management.base import BaseCommand

from avatarapp.ops.processes import web_command, worker_command


class Command(BaseCommand):
    help = "Serve the site on 127.0.0.1:$PORT (default 8000) with one generation worker."

    def handle(self, *args, **options):
        port = int(os.getenv("PORT", "8000"))
        children = [
            subprocess.Popen(web_command(port)),
            subprocess.Popen(worker_command()),
        ]
        self.stdout.write(self.style.SUCCESS(f"Chhavi is starting on http://127.0.0.1:{port}/ (Ctrl-C stops it)"))
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.2)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        self.stdout.write("Stopped.")
