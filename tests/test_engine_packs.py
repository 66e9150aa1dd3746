"""The warm engine: packs change pixels, seeds reproduce them, batches match single runs."""

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from avatarapp.packs.manifest import LoraFile
from tests.engine_helpers import demo_engine, load_demo_packs, run

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def engine():
    engine = demo_engine()
    load_demo_packs(engine)
    return engine


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
    assert not np.array_equal(alone[0], alone[1])
    for single, in_batch in zip(alone, batched, strict=True):
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


def test_the_speed_lora_changes_the_preview(engine):
    [with_speed] = run(engine, "avatar", [5], fast=True)
    engine.load_pack("avatar-no-speed", "test", Path(settings.AVATAR_PACKS_DIR) / "avatar",
                     [LoraFile("avatar.safetensors")])
    [without_speed] = run(engine, "avatar-no-speed", [5], fast=True)
    assert np.abs(with_speed - without_speed).mean() > 1


def test_stopping_from_on_step_ends_the_run_after_that_step(engine):
    steps = []
    run(engine, "avatar", [5], fast=True, on_step=lambda done, total: steps.append(done) or done < 2)
    assert steps == [1, 2]


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
    engine.load_pack("kohya-avatar", "test", folder, [LoraFile("avatar-kohya.safetensors")])
    [from_kohya] = run(engine, "kohya-avatar", [9])
    [from_diffusers] = run(engine, "avatar", [9])
    [plain] = run(engine, None, [9])
    assert np.abs(from_kohya - from_diffusers).max() <= 1
    assert np.abs(from_kohya - plain).mean() > 6
