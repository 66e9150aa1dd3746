"""Loading base models: SD 1.5 and SDXL families are detected; bad paths fail with a clear message."""

from pathlib import Path

import pytest
import torch
from django.conf import settings
from PIL import Image

from worker.engine import Engine, EngineError, GenerationRequest, detect_family

pytestmark = pytest.mark.django_db


def build_tiny_sdxl(folder: Path) -> None:
    """An SDXL-architecture img2img pipeline (two text encoders, text-time conditioning), tiny and random."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(Path(settings.AVATAR_BASE_MODEL) / "tokenizer", local_files_only=True)
    torch.manual_seed(0)
    text_config = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=8,
    )
    vae = AutoencoderKL(block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=8, layers_per_block=1)
    StableDiffusionXLImg2ImgPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_config)), tokenizer_2=tokenizer,
        unet=unet, scheduler=EulerDiscreteScheduler(), requires_aesthetics_score=False,
    ).save_pretrained(folder)


def test_the_demo_model_names_its_own_family_so_its_packs_never_meet_a_real_model():
    assert detect_family(Path(settings.AVATAR_BASE_MODEL)) == "demo"


def test_an_sdxl_model_is_detected_loaded_and_runs(tmp_path):
    build_tiny_sdxl(tmp_path / "sdxl")
    engine = Engine(base_model=str(tmp_path / "sdxl"), device="cpu")
    engine.load()
    assert engine.family == "sdxl"
    assert type(engine.pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    request = GenerationRequest(images=[Image.open(Path(__file__).parent / "fixtures" / "portrait.jpg")],
                                prompt="portrait of a person", negative_prompt="", seeds=[1], steps=2,
                                guidance=5.0, strength=1.0, width=64, height=64)
    [picture] = engine.generate(request)
    assert picture.size == (64, 64)


def test_a_demo_pack_is_refused_by_an_sdxl_worker(tmp_path, packs):
    from avatarapp.packs.models import StylePack
    from worker.packs import ensure_pack_loaded

    build_tiny_sdxl(tmp_path / "sdxl")
    engine = Engine(base_model=str(tmp_path / "sdxl"), device="cpu")
    engine.load()
    with pytest.raises(EngineError, match="made for demo"):
        ensure_pack_loaded(engine, StylePack.objects.get(slug="avatar"))


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "not a diffusers folder"),
    (lambda tmp: (tmp / "model.ckpt").write_bytes(b"pickle") and tmp / "model.ckpt", "not a .safetensors"),
    (lambda tmp: (tmp / "broken.safetensors").write_bytes(b"\\x00" * 64) and tmp / "broken.safetensors", "could not"),
])
def test_a_missing_or_broken_checkpoint_fails_with_a_clear_message(tmp_path, make, message):
    engine = Engine(base_model=str(make(tmp_path)), device="cpu")
    with pytest.raises(EngineError, match=message):
        engine.load()


def test_the_worker_engine_is_built_from_the_settings(settings, monkeypatch):
    import worker.engine

    monkeypatch.setattr(worker.engine, "_engine", None)
    threads = torch.get_num_threads()
    settings.AVATAR_DEVICE, settings.AVATAR_LORA_MODE, settings.AVATAR_TORCH_THREADS = "cpu", "fused", 1
    try:
        engine = worker.engine.get_engine()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert (engine.device, engine.lora_mode, engine.family) == ("cpu", "fused", "demo")
    assert engine.base_model == settings.AVATAR_BASE_MODEL
    assert worker.engine.get_engine() is engine  # loaded once per process
