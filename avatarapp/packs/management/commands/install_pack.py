"""Copy a pack folder into AVATAR_PACKS_DIR and register it."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from avatarapp.ops.models import live_families
from avatarapp.packs.manifest import BASE_FAMILIES, PackError, load_manifest
from avatarapp.packs.registry import check_identity_adapter, put_pack_folder, request_previews, sync_packs


class Command(BaseCommand):
    help = "Install a style pack from a folder (pack.toml + LoRA .safetensors + preview)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--base-family", default=None, choices=BASE_FAMILIES,
                            help="Family of the base model this server runs (default: that of the warm workers).")
        parser.add_argument("--replace", action="store_true", help="Replace an installed pack with the same slug.")

    def handle(self, *args: Any, path: Path, base_family: str | None, replace: bool, **options: Any) -> None:
        try:
            manifest = load_manifest(path.resolve())
            check_identity_adapter(manifest)
        except PackError as e:
            raise CommandError(str(e)) from None
        families = {base_family} if base_family else live_families()
        if not families:
            self.stderr.write("no warm worker is running, so the pack's family is not checked against a model")
        elif manifest.base_family not in families:
            raise CommandError(f"pack {manifest.slug} is made for {manifest.base_family}, but this server runs "
                               f"{', '.join(sorted(families))} models")
        target = settings.AVATAR_PACKS_DIR / manifest.slug
        if target.exists() and not replace:
            raise CommandError(f"pack {manifest.slug} is already installed; use --replace to update it")
        put_pack_folder(path, target)
        sync_packs()
        # Warm workers load it with its first job; its preview is rendered now, between jobs.
        request_previews()
        self.stdout.write(self.style.SUCCESS(f"installed {manifest.slug} {manifest.version}"))
