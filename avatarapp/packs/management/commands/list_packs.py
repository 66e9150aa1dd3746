from django.core.management.base import BaseCommand

from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import sync_packs


class Command(BaseCommand):
    help = "List the installed style packs."

    def handle(self, *args, **options):
        _, problems = sync_packs()
        for pack in StylePack.objects.all():
            state = "enabled" if pack.enabled else "disabled"
            langs = ",".join(sorted(pack.names))
            self.stdout.write(f"{pack.slug:20} {pack.version:10} {pack.base_family:6} {state:9} {pack.names.get('en', '')} [{langs}]")
        for problem in problems:
            self.stderr.write(f"broken: {problem}")
