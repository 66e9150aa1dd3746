"""Style pack previews, rendered by the operator's own worker.

A pack made for a real model family ships no preview picture (it could only show what some
other model made of it). The first time a worker of the pack's family is warm, it renders
one from a bundled public-domain reference portrait with the pack's own settings, stores it
and records its key on the pack's row; the pages show a light placeholder until then. The
key names the pack's version, so a new version is rendered again and an unchanged one never.
The demo packs keep their bundled cards: the demo model's pictures are colour fields, and a
preview of noise would tell a newcomer nothing.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from avatarapp.lib.storage_keys import pack_preview_key
from avatarapp.packs.models import StylePack
from worker.engine import Engine
from worker.packs import ensure_pack_loaded
from worker.run_job import pack_request

log = logging.getLogger(__name__)

REFERENCE_PORTRAIT = Path(__file__).resolve().parent / "assets" / "reference_portrait.jpg"
PREVIEW_SIDE = 320  # pixels: the cards show 160 CSS pixels, sharp on a 2x phone screen
PREVIEW_SEED = 20261203


def packs_needing_previews(family: str) -> list[StylePack]:
    """Enabled packs of `family` that ship no preview and have none rendered for their version."""
    if family == "demo":
        return []
    packs = StylePack.objects.filter(enabled=True, base_family=family)
    return [pack for pack in packs if not pack.spec.preview and pack.preview_key != pack_preview_key(pack.slug,
                                                                                                     pack.version)]


def render_preview(engine: Engine, pack: StylePack) -> Image.Image:
    """The pack's look on the reference portrait, with its own prompt and settings (within the caps)."""
    with Image.open(REFERENCE_PORTRAIT) as portrait:
        request = pack_request(pack, [portrait.convert("RGB")], [PREVIEW_SEED])
    ensure_pack_loaded(engine, pack)
    with engine.lock:
        engine.switch_pack(pack.slug)
        picture = engine.generate(request)[0]
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 4  # keep the head in a tall picture
    return picture.crop((left, top, left + side, top + side)).resize((PREVIEW_SIDE, PREVIEW_SIDE),
                                                                       Image.Resampling.LANCZOS)


def store_preview(pack: StylePack, image: Image.Image) -> str:
    key = pack_preview_key(pack.slug, pack.version)
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    if default_storage.exists(key):
        default_storage.delete(key)
    default_storage.save(key, ContentFile(buffer.getvalue()))
    # Only this version's row: a pack updated meanwhile is rendered again for its new version.
    StylePack.objects.filter(pk=pack.pk, version=pack.version).update(preview_key=key)
    return key


def render_missing_previews(engine: Engine) -> list[str]:
    """Render and store the previews this worker's family still lacks; returns the packs rendered.

    A pack whose preview cannot be rendered is logged and skipped, and tried again at the
    worker's next start: it keeps its placeholder meanwhile.
    """
    rendered = []
    for pack in packs_needing_previews(engine.family):
        try:
            store_preview(pack, render_preview(engine, pack))
        except Exception:  # noqa: BLE001 - one pack's failure must not stop the others' previews
            log.exception("could not render the preview of pack %s", pack.slug)
            continue
        log.info("rendered the preview of pack %s %s", pack.slug, pack.version)
        rendered.append(pack.slug)
    return rendered
