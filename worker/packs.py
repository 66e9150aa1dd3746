"""Keep the engine's resident adapters in step with the registered packs."""

from __future__ import annotations

from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import pack_folder
from worker.engine import Engine, EngineError


def ensure_pack_loaded(engine: Engine, pack: StylePack) -> None:
    """Load the pack's LoRA files on the engine unless this version already is (then it costs nothing)."""
    if engine.family and pack.base_family != engine.family:
        raise EngineError(f"pack {pack.slug} is made for {pack.base_family} models; this worker runs {engine.family}")
    spec = pack.spec
    engine.load_pack(pack.slug, pack.version, pack_folder(pack), spec.loras, spec.fast.lora if spec.fast else None)


def ensure_packs_loaded(engine: Engine) -> None:
    """Warm every pack this worker can run; packs for another model family are left to workers that can."""
    for pack in StylePack.objects.filter(enabled=True, base_family=engine.family or "sd15"):
        ensure_pack_loaded(engine, pack)
