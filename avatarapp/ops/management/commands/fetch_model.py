"""Download a base model (or a speed LoRA) from the model catalogue into AVATAR_MODELS_DIR."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from avatarapp.modelstore import store
from avatarapp.modelstore.catalogue import CatalogueEntry, catalogue_path, load_catalogue
from avatarapp.modelstore.download import Fetcher
from avatarapp.modelstore.errors import ModelStoreError


class Command(BaseCommand):
    help = ("Download a model from the catalogue (AVATAR_MODEL_CATALOGUE) into AVATAR_MODELS_DIR: resumable, "
            "every file's size and SHA-256 checked, installed only when complete. HF_ENDPOINT names a mirror, "
            "HF_TOKEN a Hugging Face token.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", help="The catalogue name of the model (see --list).")
        parser.add_argument("--list", action="store_true", dest="list_models",
                            help="List the catalogue's models and exit.")
        parser.add_argument("--models-dir", type=Path, default=None,
                            help="Where models are installed (default: AVATAR_MODELS_DIR).")
        parser.add_argument("--verify", action="store_true",
                            help="Re-read an installed model's files and check their SHA-256 (else sizes only).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")

    def handle(self, *args: Any, name: str | None, list_models: bool, models_dir: Path | None, verify: bool,
               no_progress: bool, **options: Any) -> None:
        try:
            catalogue = load_catalogue(catalogue_path())
        except ModelStoreError as e:
            raise CommandError(str(e)) from None
        if list_models:
            self._list(catalogue)
            return
        if not name:
            raise CommandError(f"name a model to fetch: {', '.join(sorted(catalogue)) or '(the catalogue is empty)'}"
                               f" (--list describes them)")
        entry = catalogue.get(name)
        if entry is None:
            raise CommandError(f"{name!r} is not in the model catalogue {catalogue_path()}; its models are: "
                               f"{', '.join(sorted(catalogue)) or '(none)'}")
        folder = (models_dir or store.models_dir()).resolve()
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a log line per request: the bars say it
        try:
            with store.locked(folder):
                try:
                    result = Fetcher(entry, folder, timeout=settings.AVATAR_DOWNLOAD_TIMEOUT, say=self._say,
                                     progress=False if no_progress else None).run(rehash=verify)
                finally:
                    store.tidy_staging(folder)
        except ModelStoreError as e:
            raise CommandError(str(e)) from None
        if result.installed:
            self.stdout.write(self.style.SUCCESS(
                f"installed {entry.name} ({entry.title}, {entry.family}) in {result.target}, every file verified "
                f"({store.human_size(result.received)} downloaded)"))
        else:
            self.stdout.write(self.style.SUCCESS(
                f"{entry.name} is already installed in {result.target}, "
                + ("every file re-read and verified" if verify else "every file present at its size (--verify "
                   "re-reads them)") + "; nothing downloaded"))
        self.stdout.write(f"licence: {entry.licence or 'not stated'}"
                          + (f" ({entry.licence_url})" if entry.licence_url else "")
                          + f"; commercial use: {'yes' if entry.commercial_use else 'NO'}")
        record = store.read_record(result.target)
        if record is not None:
            self.stdout.write(store.use_hint(record, result.target))

    def _say(self, message: str) -> None:
        self.stdout.write(message)

    def _list(self, catalogue: dict[str, CatalogueEntry]) -> None:
        if not catalogue:
            self.stdout.write(f"the model catalogue {catalogue_path()} is empty")
            return
        for entry in sorted(catalogue.values(), key=lambda e: e.name):
            self.stdout.write(
                f"{entry.name:<20} {entry.family:<5} {entry.kind:<10} {store.human_size(entry.total_size):>9}  "
                f"{entry.title}\n{'':<20} licence: {entry.licence or 'not stated'}; commercial use: "
                f"{'yes' if entry.commercial_use else 'no'}" + (f"; suits: {entry.suits}" if entry.suits else ""))

