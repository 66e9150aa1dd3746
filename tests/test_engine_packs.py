"""The warm engine: packs change pixels, seeds reproduce them, batches match single runs."""

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from tests.helpers import FIXTURES

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def engine():
    from worker.engine import Engine

    engine = Engine(settings.AVATAR_BASE_MODEL, device="cpu")
    engine.load()
    for slug in ("cinematic", "avatar"):
        engine.load_pack(slug, "test", Path(settings.AVATAR_PACKS_DIR) / slug,
                         [{"file": f"{slug}.safetensors", "weight": 1.0}], {"file": "speed.safetensors", "weight": 1.0})
    return engine


def run(engine, pack, seeds, photo="portrait.jpg", fast=False, on_step=None):
    from worker.engine import GenerationRequest

    engine.switch_pack(pack, fast=fast)
    image = Image.open(FIXTURES / photo)
    request = GenerationRequest(images=[image] * len(seeds), prompt="portrait of a person, cinematic",
                                negative_prompt="blurry", seeds=seeds, steps=7 if fast else 8,
                                guidance=1.0 if fast else 5.0, strength=0.6, width=512, height=512,
                                scheduler="lcm" if fast else "")
    return [np.asarray(picture).astype(int) for picture in engine.generate(request, on_step=on_step)]


def test_a_pack_changes_the_pixels_against_no_pack_and_the_other_pack(engine):
    [plain] = run(engine, None, [3])
    [cinematic] = run(engine, "cinematic", [3])
    [avatar] = run(engine, "avatar", [3])
    assert np.abs(cinematic - plain).mean() > 6
    assert np.abs(cinematic - avatar).mean() > 6
    assert np.abs(avatar - plain).mean() > 6


def test_the_same_seed_and_pack_give_the_same_pixels_after_switching_around(engine):
    [first] = run(engine, "cinematic", [11])
    run(engine, "avatar", [11])
    run(engine, None, [11])
    [again] = run(engine, "cinematic", [11])
    assert np.array_equal(first, again)
    [other_seed] = run(engine, "cinematic", [12])
    assert not np.array_equal(first, other_seed)


def test_a_batch_gives_each_seed_the_pixels_it_gets_alone(engine):
    alone = [run(engine, "avatar", [seed])[0] for seed in (21, 22, 23)]
    batched = run(engine, "avatar", [21, 22, 23])
    for single, in_batch in zip(alone, batched):
        # Batched matrix products round differently in the last bits; pictures stay the same.
        assert np.abs(single - in_batch).max() <= 2


def test_the_fast_preview_runs_four_steps_with_its_own_sampler_and_speed_lora(engine):
    steps = []
    [preview] = run(engine, "avatar", [5], fast=True, on_step=lambda done, total: steps.append(done) or True)
    assert steps == [1, 2, 3, 4]
    [preview_again] = run(engine, "avatar", [5], fast=True)
    [full] = run(engine, "avatar", [5])
    assert np.array_equal(preview, preview_again)
    assert np.abs(preview - full).mean() > 2
    assert type(engine.pipe.scheduler).__name__ == "DDIMScheduler"  # the model's own sampler is back


def to_kohya(peft_file: Path, out_file: Path) -> None:
    """Rewrite a diffusers/peft LoRA with kohya/A1111 key names (lora_down/lora_up/alpha)."""
    import torch
    from safetensors.torch import load_file, save_file

    kohya = {}
    for key, tensor in load_file(peft_file).items():
        module, kind = key.removeprefix("unet.").rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = tensor
        if kind.startswith("A"):
            kohya[f"{name}.alpha"] = torch.tensor(float(tensor.shape[0]))
    save_file(kohya, out_file)


def test_a_kohya_format_lora_gives_the_same_pixels_as_its_diffusers_twin(engine, tmp_path):
    folder = tmp_path / "kohya-avatar"
    folder.mkdir()
    to_kohya(Path(settings.AVATAR_PACKS_DIR) / "avatar" / "avatar.safetensors", folder / "avatar-kohya.safetensors")
    engine.load_pack("kohya-avatar", "test", folder, [{"file": "avatar-kohya.safetensors", "weight": 1.0}])
    [from_kohya] = run(engine, "kohya-avatar", [9])
    [from_diffusers] = run(engine, "avatar", [9])
    [plain] = run(engine, None, [9])
    assert np.abs(from_kohya - from_diffusers).max() <= 1
    assert np.abs(from_kohya - plain).mean() > 6


def test_hotswap_mode_for_torch_compile_gives_the_same_pixels_as_adapters(engine):
    """Compile mode keeps one adapter slot and swaps pack weights into it in place."""
    from worker.engine import Engine

    swapping = Engine(settings.AVATAR_BASE_MODEL, device="cpu", lora_mode="hotswap", max_lora_rank=8)
    swapping.load()
    for slug in ("cinematic", "avatar"):
        swapping.load_pack(slug, "test", Path(settings.AVATAR_PACKS_DIR) / slug,
                           [{"file": f"{slug}.safetensors", "weight": 1.0}])
    for pack in ("avatar", "cinematic", None, "avatar"):
        [swapped] = run(swapping, pack, [4])
        [reference] = run(engine, pack, [4])
        assert np.abs(swapped - reference).max() <= 1, pack


def test_fused_mode_in_half_precision_restores_the_exact_base_weights_after_many_switches():
    """Merge-then-unmerge does not round-trip in bf16; the engine restores saved weights instead."""
    import torch

    from worker.engine import Engine

    fused = Engine(settings.AVATAR_BASE_MODEL, device="cpu", dtype="bf16", lora_mode="fused")
    fused.load()
    for slug in ("cinematic", "avatar"):
        fused.load_pack(slug, "test", Path(settings.AVATAR_PACKS_DIR) / slug,
                        [{"file": f"{slug}.safetensors", "weight": 1.0}])
    fused.switch_pack(None)
    before = {name: w.clone() for name, w in fused.pipe.unet.named_parameters() if "base_layer" in name}
    for n in range(40):
        fused.switch_pack(("cinematic", "avatar")[n % 2])
    changed = {name for name, w in fused.pipe.unet.named_parameters() if name in before and not torch.equal(w, before[name])}
    assert changed, "a fused pack must change the base weights"
    fused.switch_pack(None)
    for name, weight in fused.pipe.unet.named_parameters():
        if name in before:
            assert torch.equal(weight, before[name]), name
