"""Install the packs that ship with Chhavi, then register the packs found under AVATAR_PACKS_DIR
(the web side never builds them)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from avatarapp.packs.registry import install_shipped_packs, request_previews, sync_packs


class Command(BaseCommand):
    help = ("Copy the packs that ship with Chhavi into AVATAR_PACKS_DIR, register every valid pack folder there "
            "and disable rows whose folder is gone.")

    def handle(self, *args: Any, **options: Any) -> None:
        for slug in install_shipped_packs():
            self.stdout.write(f"  installed the shipped pack {slug}")
        registered, problems = sync_packs()
        for problem in problems:
            self.stderr.write(f"  skipped: {problem}")
        self.stdout.write(f"Packs ready: {', '.join(registered) or 'none'}")
        try:
            request_previews()
        except Exception as e:  # noqa: BLE001 - no broker yet (a first `make prepare`): workers render at start
            self.stderr.write(f"  previews not requested now ({e}); each worker renders them when it starts")
