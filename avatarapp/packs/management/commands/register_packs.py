"""Register the packs found under AVATAR_PACKS_DIR (the web side never builds them)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from avatarapp.packs.registry import sync_packs


class Command(BaseCommand):
    help = "Register every valid pack folder under AVATAR_PACKS_DIR and disable rows whose folder is gone."

    def handle(self, *args: Any, **options: Any) -> None:
        registered, problems = sync_packs()
        for problem in problems:
            self.stderr.write(f"  skipped: {problem}")
        self.stdout.write(f"Packs ready: {', '.join(registered) or 'none'}")
