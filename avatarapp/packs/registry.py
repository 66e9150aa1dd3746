"""Keep the StylePack table in step with the pack folders on disk."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from avatarapp.packs.manifest import PackError, load_manifest
from avatarapp.packs.models import StylePack

log = logging.getLogger(__name__)


def sync_packs(packs_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """Register every valid pack folder; disable rows whose folder is gone.

    Returns (registered slugs, problems). A broken pack is reported and skipped,
    so one bad folder cannot take the others down.
    """
    packs_dir = packs_dir or settings.AVATAR_PACKS_DIR
    registered, problems = [], []
    folders = sorted(p for p in packs_dir.iterdir() if p.is_dir()) if packs_dir.is_dir() else []
    for position, folder in enumerate(folders):
        try:
            manifest = load_manifest(folder)
        except PackError as e:
            problems.append(str(e))
            log.warning("skipping pack: %s", e)
            continue
        StylePack.objects.update_or_create(
            slug=manifest.slug,
            defaults={
                "version": manifest.version,
                "base_family": manifest.base_family,
                "names": manifest.names,
                "descriptions": manifest.descriptions,
                "manifest": manifest.spec.to_json(),
                "enabled": True,
                "position": position,
            },
        )
        registered.append(manifest.slug)
    StylePack.objects.exclude(slug__in=registered).update(enabled=False)
    return registered, problems


def pack_folder(pack: StylePack) -> Path:
    """Where the pack's files are on disk (its LoRA files, preview image)."""
    return settings.AVATAR_PACKS_DIR / (pack.spec.folder or pack.slug)
