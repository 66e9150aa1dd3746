"""Storage operations beyond django-storages' per-file API: deleting a whole prefix."""

from __future__ import annotations

import logging
from pathlib import Path

from django.core.files.storage import Storage, default_storage

log = logging.getLogger(__name__)


def keys_under(prefix: str, storage: Storage | None = None) -> list[str]:
    """Every file key below `prefix` (a folder-like key ending in "/"), on local disk or S3."""
    storage = storage or default_storage
    found: list[str] = []
    pending = [prefix.rstrip("/")]
    while pending:
        folder = pending.pop()
        try:
            folders, files = storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        found += [f"{folder}/{name}" for name in files]
        pending += [f"{folder}/{name}" for name in folders]
    return found


def delete_prefix(prefix: str, storage: Storage | None = None) -> int:
    """Delete every file under `prefix`; return how many. Empty local folders go too."""
    storage = storage or default_storage
    keys = keys_under(prefix, storage)
    for key in keys:
        storage.delete(key)
    remove_empty_folders(prefix, storage)
    log.info("deleted %d files under %s", len(keys), prefix)
    return len(keys)


def remove_empty_folders(prefix: str, storage: Storage, keep_root: bool = False) -> None:
    """On local disk, folders outlive their files; S3 has no folders to remove."""
    if not hasattr(storage, "path"):
        return
    try:
        root = Path(storage.path(prefix.rstrip("/")))
    except NotImplementedError:
        return
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not keep_root and not any(root.iterdir()):
        root.rmdir()
