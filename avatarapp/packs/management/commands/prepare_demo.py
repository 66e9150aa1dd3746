"""Build the demo model and demo packs if absent, then register the packs."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from avatarapp.packs.demo import DEMO_PACK_SLUGS, DEMO_PACK_VERSION
from avatarapp.packs.registry import sync_packs


class Command(BaseCommand):
    help = "Build the demo model and packs into var/ if they are missing, then register installed packs."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Rebuild even if present.")

    def handle(self, *args, force=False, **options):
        model_dir = Path(settings.AVATAR_BASE_MODEL)
        demo_dir = settings.VAR_DIR / "models" / "demo"
        uses_demo = model_dir == demo_dir
        # Demo packs are rebuilt when this code ships a newer version of them (the version line
        # is read as text: this command must not import the worker's torch just to check).
        demo_version = f'version = "{DEMO_PACK_VERSION}"'
        packs_missing = any(
            not (settings.AVATAR_PACKS_DIR / slug / "pack.toml").is_file()
            or demo_version not in (settings.AVATAR_PACKS_DIR / slug / "pack.toml").read_text()
            for slug in DEMO_PACK_SLUGS)
        if force or (uses_demo and not (model_dir / "model_index.json").is_file()) or packs_missing:
            # Imported here: only this command (and the worker) may load torch.
            from worker.demo_model import build_demo

            self.stdout.write("Building the demo model and packs (about 10 s)…")
            built = build_demo(demo_dir, settings.AVATAR_PACKS_DIR, force=force)
            for path in built:
                self.stdout.write(f"  built {path}")
        registered, problems = sync_packs()
        for problem in problems:
            self.stderr.write(f"  skipped: {problem}")
        self.stdout.write(f"Packs ready: {', '.join(registered) or 'none'}")
