"""Write an installed model (and the style packs made for its family) into one bundle file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from avatarapp.modelstore import store
from avatarapp.modelstore.bundle import export_bundle
from avatarapp.modelstore.errors import ModelStoreError


class Command(BaseCommand):
    help = ("Write an installed model (see fetch_model) into one uncompressed .tar, to carry to a machine with no "
            "network and install there with `import_model OUT.tar`. --packs adds every style pack in "
            "AVATAR_PACKS_DIR made for the model's family.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The installed model's name (its folder under the models folder).")
        parser.add_argument("out", type=Path, help="The bundle file to write, e.g. chhavi-sd15.tar.")
        parser.add_argument("--packs", action="store_true", help="Include the packs made for the model's family.")
        parser.add_argument("--models-dir", type=Path, default=None,
                            help="Where models are installed (default: AVATAR_MODELS_DIR).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")

    def handle(self, *args: Any, name: str, out: Path, packs: bool, models_dir: Path | None, no_progress: bool,
               **options: Any) -> None:
        folder = (models_dir or store.models_dir()).resolve()
        if out.is_dir():
            raise CommandError(f"{out} is a folder; name the bundle file to write, e.g. {out / f'chhavi-{name}.tar'}")
        try:
            result = export_bundle(name, out, folder=folder, packs_dir=Path(settings.AVATAR_PACKS_DIR),
                                   with_packs=packs, say=self.stdout.write,
                                   progress=False if no_progress else None)
        except ModelStoreError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(self.style.SUCCESS(f"wrote {result.path} ({store.human_size(result.size)})"))
        self.stdout.write(f"packs: {', '.join(result.packs) if result.packs else 'none'}")
        self.stdout.write(f"sha256 {result.sha256}")
        self.stdout.write(f"on the other machine: python manage.py import_model {result.path.name} "
                          f"--sha256 {result.sha256}")
