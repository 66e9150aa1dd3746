"""What the engine tests share: the demo engine, its packs, and one small run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from avatarapp.packs.manifest import LoraFile
from tests.helpers import FIXTURES
from worker.engine import Engine, GenerationRequest

SPEED_LORA = LoraFile("speed.safetensors")


def demo_engine(**options) -> Engine:
    """The demo model loaded on the CPU, with `options` as Engine keyword arguments."""
    engine = Engine(base_model=settings.AVATAR_BASE_MODEL, device="cpu", **options)
    engine.load()
    return engine


def load_demo_packs(engine: Engine, speed_lora: LoraFile | None = SPEED_LORA) -> None:
    for slug in ("cinematic", "avatar"):
        engine.load_pack(slug, "test", Path(settings.AVATAR_PACKS_DIR) / slug, [LoraFile(f"{slug}.safetensors")],
                         speed_lora)


def run(engine: Engine, pack: str | None, seeds: list[int], fast: bool = False, on_step=None,
        likeness: tuple[str, float] | None = None) -> list[np.ndarray]:
    """64x64 pictures as int arrays: the smallest run in which a pack, a seed or a batch shows.

    A full picture runs 2 steps at full strength; a preview's 7 steps at strength 0.6 run
    the 4 that a pack's [fast] table asks for, with its sampler. `likeness`: a loaded likeness
    model (key, weight) applied beside the pack.
    """
    engine.switch_pack(pack, fast=fast, likeness=likeness)
    image = Image.open(FIXTURES / "portrait.jpg")
    request = GenerationRequest(images=[image] * len(seeds), prompt="portrait of a person, cinematic",
                                negative_prompt="blurry", seeds=seeds, steps=7 if fast else 2,
                                guidance=1.0 if fast else 5.0, strength=0.6 if fast else 1.0, width=64, height=64,
                                scheduler="lcm" if fast else "")
    return [np.asarray(picture).astype(int) for picture in engine.generate(request, on_step=on_step)]
