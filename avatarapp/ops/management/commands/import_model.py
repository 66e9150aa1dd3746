"""Install a model from a diffusers folder, a .safetensors checkpoint or a bundle made by export_bundle."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from avatarapp.modelstore import store
from avatarapp.modelstore.bundle import import_bundle
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.importer import ImportResult, import_local


class Command(BaseCommand):
    help = ("Install a model into AVATAR_MODELS_DIR from a diffusers folder (model_index.json), a single "
            ".safetensors checkpoint (SD 1.5 or SDXL), or a bundle .tar made by export_bundle (whose packs go to "
            "AVATAR_PACKS_DIR). Everything is checked first and installed in one step; no network is used.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="A diffusers folder, a .safetensors file or a bundle .tar.")
        parser.add_argument("--name", default=None,
                            help="The model's folder name under the models folder (default: from the source).")
        parser.add_argument("--models-dir", type=Path, default=None,
                            help="Where models are installed (default: AVATAR_MODELS_DIR).")
        parser.add_argument("--replace", action="store_true",
                            help="Replace a model (or a bundle's pack) already installed under that name.")
        parser.add_argument("--sha256", default=None,
                            help="A bundle's expected SHA-256 (as printed by export_bundle); checked first.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")

    def handle(self, *args: Any, path: Path, name: str | None, models_dir: Path | None, replace: bool,
               sha256: str | None, no_progress: bool, **options: Any) -> None:
        folder = (models_dir or store.models_dir()).resolve()
        progress = False if no_progress else None
        try:
            is_bundle = path.is_file() and path.suffix != ".safetensors" and tarfile.is_tarfile(path)
            if sha256 and not is_bundle:
                raise ModelStoreError("--sha256 checks a bundle .tar; this is not one")
            with store.locked(folder):
                if is_bundle:
                    result = import_bundle(path, name=name, folder=folder, packs_dir=Path(settings.AVATAR_PACKS_DIR),
                                           replace=replace, expected_sha256=sha256, say=self.stdout.write,
                                           progress=progress)
                else:
                    result = import_local(path, name=name, folder=folder, replace=replace, progress=progress)
        except ModelStoreError as e:
            raise CommandError(str(e)) from None
        except OSError as e:
            raise CommandError(f"cannot read {path}: {e.strerror or e}") from None
        self._report(result)

    def _report(self, result: ImportResult) -> None:
        record = result.record
        what = f"{record.get('name')} ({record.get('family')}, {record.get('kind')})"
        if result.installed:
            size = sum(int(f.get("size", 0)) for f in record.get("files", []))
            self.stdout.write(self.style.SUCCESS(
                f"installed {what} in {result.target}: {len(record.get('files', []))} files, "
                f"{store.human_size(size)}, every file verified"))
        else:
            self.stdout.write(self.style.SUCCESS(f"{what} is already installed in {result.target} with the same "
                                                 f"files; nothing to do"))
        if result.skipped:
            self.stdout.write(f"left out {len(result.skipped)} pickle-format files the worker does not load: "
                              f"{', '.join(result.skipped[:5])}" + (" ..." if len(result.skipped) > 5 else ""))
        if result.packs:
            self.stdout.write(f"packs installed and registered: {', '.join(result.packs)}")
        if record.get("licence"):
            self.stdout.write(f"licence: {record['licence']}"
                              + (f" ({record['licence_url']})" if record.get("licence_url") else ""))
        self.stdout.write(store.use_hint(record, result.target))
