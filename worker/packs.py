"""Keep the engine's resident adapters in step with the registered packs."""

from __future__ import annotations

from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import pack_folder
from worker.engine import Engine


def ensure_pack_loaded(engine: Engine, pack: StylePack) -> None:
    fast = pack.manifest.get("fast") or {}
    engine.load_pack(pack.slug, pack.version, pack_folder(pack), pack.manifest.get("loras", []), fast.get("lora"))


def ensure_packs_loaded(engine: Engine) -> None:
    for pack in StylePack.objects.filter(enabled=True):
        ensure_pack_loaded(engine, pack)
