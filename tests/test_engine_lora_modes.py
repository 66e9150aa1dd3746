"""The three LoRA modes give the same pictures; what a mode cannot do is an error, not a silent drop."""

from pathlib import Path

import numpy as np
import pytest
import torch
from django.conf import settings

from avatarapp.packs.manifest import LoraFile
from tests.engine_helpers import demo_engine, load_demo_packs, run
from worker.engine import Engine, EngineError

pytestmark = pytest.mark.django_db

AVATAR = Path(settings.AVATAR_PACKS_DIR) / "avatar"


@pytest.fixture(scope="module")
def engine() -> Engine:
    """The reference: the default mode on a CPU (active adapters)."""
    engine = demo_engine()
    load_demo_packs(engine)
    return engine


def test_hotswap_mode_for_torch_compile_gives_the_same_pixels_as_adapters(engine):
    """Compile mode keeps one adapter slot and swaps pack weights into it in place."""
    swapping = demo_engine(lora_mode="hotswap", max_lora_rank=8)
    load_demo_packs(swapping, speed_lora=None)
    for pack in ("avatar", "cinematic", None, "avatar"):
        [swapped] = run(swapping, pack, [4])
        [reference] = run(engine, pack, [4])
        assert np.abs(swapped - reference).max() <= 1, pack


def test_fused_mode_gives_the_same_pixels_as_adapters(engine):
    fused = demo_engine(lora_mode="fused")
    load_demo_packs(fused)
    for pack, fast in (("avatar", False), ("cinematic", False), ("avatar", True), (None, False)):
        [merged] = run(fused, pack, [4], fast=fast)
        [reference] = run(engine, pack, [4], fast=fast)
        assert np.abs(merged - reference).max() <= 1, (pack, fast)


def test_fused_mode_in_half_precision_restores_the_exact_base_weights_after_many_switches():
    """Merge-then-unmerge does not round-trip in bf16; the engine restores saved weights instead."""
    fused = demo_engine(dtype="bf16", lora_mode="fused")
    load_demo_packs(fused, speed_lora=None)
    fused.switch_pack(None)
    before = {name: w.clone() for name, w in fused.pipe.unet.named_parameters() if "base_layer" in name}
    for n in range(40):
        fused.switch_pack(("cinematic", "avatar")[n % 2])
    changed = {name for name, w in fused.pipe.unet.named_parameters()
               if name in before and not torch.equal(w, before[name])}
    assert changed, "a fused pack must change the base weights"
    # The saved weights are keyed by module name, one per merged layer.
    assert {f"unet.{name.removesuffix('.base_layer.weight')}" for name in changed} <= set(fused.lora.pristine)
    fused.switch_pack(None)
    for name, weight in fused.pipe.unet.named_parameters():
        if name in before:
            assert torch.equal(weight, before[name]), name


def test_compile_mode_refuses_a_preview_that_needs_a_speed_lora():
    swapping = demo_engine(lora_mode="hotswap", max_lora_rank=8)
    swapping.load_pack("avatar", "test", AVATAR, [LoraFile("avatar.safetensors")], LoraFile("speed.safetensors"))
    with pytest.raises(EngineError, match="avatar: its quick preview needs a speed LoRA"):
        swapping.switch_pack("avatar", fast=True)
    swapping.switch_pack("avatar")  # the full picture still runs


def test_compile_mode_refuses_a_pack_with_two_lora_files():
    swapping = demo_engine(lora_mode="hotswap", max_lora_rank=8)
    with pytest.raises(EngineError, match="avatar has 2 LoRA files; compile mode .* takes one per pack at most"):
        swapping.load_pack("avatar", "test", AVATAR, [LoraFile("avatar.safetensors"), LoraFile("speed.safetensors")])
    with pytest.raises(EngineError, match="not loaded"):
        swapping.switch_pack("avatar")


def test_every_mode_runs_a_prompt_only_pack_as_the_base_model():
    """A pack with no LoRA file (the shipped SD1.5 and SDXL packs) changes only the prompt."""
    for mode in ("active", "fused", "hotswap"):
        engine = demo_engine(lora_mode=mode, max_lora_rank=8)
        engine.load_pack("avatar", "test", AVATAR, [LoraFile("avatar.safetensors")])
        engine.load_pack("prompt-only", "test", AVATAR, [])
        [base] = run(engine, None, [4])
        [avatar] = run(engine, "avatar", [4])
        [prompt_only] = run(engine, "prompt-only", [4])
        assert not np.array_equal(avatar, base), mode
        assert np.abs(prompt_only - base).max() <= 1, mode


def test_compile_mode_refuses_a_lora_above_the_slot_rank():
    swapping = demo_engine(lora_mode="hotswap", max_lora_rank=2)
    with pytest.raises(EngineError, match="rank 4, above the compile-mode slot's rank 2"):
        swapping.load_pack("avatar", "test", AVATAR, [LoraFile("avatar.safetensors")])


@pytest.mark.parametrize("options, message", [
    ({"lora_mode": "fused", "compile_unet": True}, "compiled UNet needs LoRA mode hotswap"),
    ({"lora_mode": "merged"}, "unknown LoRA mode 'merged'"),
    ({"dtype": "float16"}, "unknown dtype 'float16'"),
])
def test_an_engine_that_cannot_work_is_refused_when_built(options, message):
    with pytest.raises(EngineError, match=message):
        Engine(base_model=settings.AVATAR_BASE_MODEL, device="cpu", **options)


def test_auto_mode_picks_hotswap_for_a_compiled_unet_and_active_on_cpu():
    assert Engine(base_model=settings.AVATAR_BASE_MODEL, device="cpu").lora_mode == "active"
    assert Engine(base_model=settings.AVATAR_BASE_MODEL, device="cpu", compile_unet=True).lora_mode == "hotswap"
