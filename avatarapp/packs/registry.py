"""Keep the StylePack table in step with the pack folders on disk."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from django.conf import settings

from avatarapp.celery import RENDER_PREVIEWS_TASK, app, generation_queue
from avatarapp.modelstore.identity import SETTING as IDENTITY_SETTING
from avatarapp.modelstore.identity import identity_adapter_problem
from avatarapp.ops.models import live_families
from avatarapp.packs.manifest import PackError, PackManifest, load_manifest
from avatarapp.packs.models import StylePack

log = logging.getLogger(__name__)


def sync_packs(packs_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """Register every valid pack folder; disable rows whose folder is gone.

    Returns (registered slugs, problems). A broken pack is reported and skipped,
    so one bad folder cannot take the others down.
    """
    packs_dir = packs_dir or settings.AVATAR_PACKS_DIR
    registered, problems = [], []
    # Hidden folders are packs on their way in or out (put_pack_folder), not packs.
    folders = sorted(p for p in packs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if packs_dir.is_dir() else []
    for position, folder in enumerate(folders):
        try:
            manifest = load_manifest(folder)
            check_identity_adapter(manifest)
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


def check_identity_adapter(manifest: PackManifest) -> None:
    """Refuse a pack that asks for the identity adapter when this site has none to give it.

    Only the setting and the folder's files are looked at (the web process never imports torch);
    the worker loads and checks the weights themselves when it starts.
    """
    strength = manifest.spec.identity_strength
    if strength <= 0:
        return
    problem = identity_adapter_problem(settings.AVATAR_IDENTITY_ADAPTER, settings.AVATAR_MODELS_DIR)
    if problem:
        raise PackError(
            f"pack {manifest.slug} asks for identity_strength = {strength:g}, which needs the identity adapter, "
            f"but {problem}. Install one (`python manage.py fetch_model "
            f"ip-adapter-plus-face-{_family_hint(manifest)}`) and set {IDENTITY_SETTING} to it, or set "
            f"identity_strength = 0 in the pack's [defaults]")


def _family_hint(manifest: PackManifest) -> str:
    return "sdxl" if manifest.base_family == "sdxl" else "sd15"


def put_pack_folder(source: Path, target: Path, *, move: bool = False) -> None:
    """Put a checked pack folder at `target` in one step, replacing what was there.

    The folder is copied (or, with `move`, moved when it is on the same disk) to a hidden
    sibling of `target` first and renamed into place, so a worker or `sync_packs` never reads
    half a pack (hidden folders are not packs).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if not move or os.stat(source).st_dev != os.stat(target.parent).st_dev:
        incoming = target.parent / f".{target.name}.incoming-{os.getpid()}"
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.copytree(source, incoming)
        source = incoming
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def install_shipped_packs(shipped_dir: Path | None = None, packs_dir: Path | None = None) -> list[str]:
    """Copy the packs that ship with Chhavi (packs/<family>/<slug>/) into AVATAR_PACKS_DIR.

    A pack already there at the same version is left alone; another version is replaced, so
    an upgrade of Chhavi brings its packs' new prompts. Returns the slugs copied.
    """
    shipped_dir = shipped_dir or settings.AVATAR_SHIPPED_PACKS_DIR
    packs_dir = packs_dir or settings.AVATAR_PACKS_DIR
    copied = []
    for folder in sorted(shipped_dir.glob("*/*/")):
        try:
            manifest = load_manifest(folder)
        except PackError as e:
            log.warning("skipping a shipped pack: %s", e)
            continue
        target = packs_dir / manifest.slug
        try:
            current = load_manifest(target).version if target.is_dir() else None
        except PackError:
            current = None
        if current != manifest.version:
            put_pack_folder(folder, target)
            copied.append(manifest.slug)
    return copied


def pack_folder(pack: StylePack) -> Path:
    """Where the pack's files are on disk (its LoRA files, preview image)."""
    return settings.AVATAR_PACKS_DIR / (pack.spec.folder or pack.slug)


def request_previews() -> list[str]:
    """Ask the warm workers of each real model family to render the previews their packs lack.

    Called after packs are installed or registered, so a pack installed while workers run
    gets its preview without a restart (a worker also asks for this itself once it is warm).
    Returns the families asked.
    """
    families = sorted(live_families() - {"demo"})
    for family in families:
        app.send_task(RENDER_PREVIEWS_TASK, queue=generation_queue(family))
    return families
