from typing import Any

from django.core.management.base import BaseCommand

from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import sync_packs


class Command(BaseCommand):
    help = "List the installed style packs."

    def handle(self, *args: Any, **options: Any) -> None:
        _, problems = sync_packs()
        for pack in StylePack.objects.all():
            state = "enabled" if pack.enabled else "disabled"
            langs = ",".join(sorted(pack.names))
            name = pack.names.get("en", "")
            self.stdout.write(f"{pack.slug:20} {pack.version:10} {pack.base_family:6} {state:9} {name} [{langs}]")
        for problem in problems:
            self.stderr.write(f"broken: {problem}")
