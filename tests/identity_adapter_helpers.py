"""A tiny, randomly initialised identity adapter (IP-Adapter Plus) and CLIP image encoder, built by the tests.

Laid out as AVATAR_IDENTITY_ADAPTER expects (avatarapp/modelstore/identity.py): ``ip_adapter.safetensors``
in the original IP-Adapter format (``image_proj.*`` for the Plus Resampler, ``ip_adapter.N.to_k_ip/to_v_ip``
for each cross-attention layer) and ``image_encoder/``, a transformers CLIPVisionModelWithProjection with its
CLIPImageProcessor config, so nothing is read from a hub. The weights are seeded, so every build is the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

ENCODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "image_size": 32, "patch_size": 8, "projection_dim": 16}
RESAMPLER_WIDTH = 32  # the Plus Resampler's own width; its heads are 64 wide, so one head
RESAMPLER_QUERIES = 4  # image tokens the adapter adds to each cross-attention
RESAMPLER_DEPTH = 4  # diffusers' IPAdapterPlusImageProjection always has four blocks
SEED = 20261203


def build_image_encoder(folder: Path, seed: int = SEED) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**ENCODER)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    size = ENCODER["image_size"]
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def cross_attention_widths(unet_config: Path) -> list[int]:
    """The query width of each cross-attention layer of the UNet, in diffusers' processor order."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(json.loads(unet_config.read_text()))
    return [unet.get_submodule(name.removesuffix(".processor")).to_out[0].out_features
            for name in unet.attn_processors if not name.endswith("attn1.processor")]


def resampler_state(generator: torch.Generator, embed_width: int, cross_width: int) -> dict[str, torch.Tensor]:
    """The Plus Resampler in the original IP-Adapter key names (diffusers converts them on load)."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) / shape[-1] ** 0.5

    width, inner = RESAMPLER_WIDTH, 64
    state = {"latents": rand(1, RESAMPLER_QUERIES, width),
             "proj_in.weight": rand(width, embed_width), "proj_in.bias": torch.zeros(width),
             "proj_out.weight": rand(cross_width, width), "proj_out.bias": torch.zeros(cross_width),
             "norm_out.weight": torch.ones(cross_width), "norm_out.bias": torch.zeros(cross_width)}
    for i in range(RESAMPLER_DEPTH):
        for norm in ("0.norm1", "0.norm2", "1.0"):
            state[f"layers.{i}.{norm}.weight"] = torch.ones(width)
            state[f"layers.{i}.{norm}.bias"] = torch.zeros(width)
        state[f"layers.{i}.0.to_q.weight"] = rand(inner, width)
        state[f"layers.{i}.0.to_kv.weight"] = rand(2 * inner, width)
        state[f"layers.{i}.0.to_out.weight"] = rand(width, inner)
        state[f"layers.{i}.1.1.weight"] = rand(4 * width, width)
        state[f"layers.{i}.1.3.weight"] = rand(width, 4 * width)
    return {f"image_proj.{key}": value for key, value in state.items()}


def plain_projection_state(generator: torch.Generator, cross_width: int) -> dict[str, torch.Tensor]:
    """The plain IP-Adapter's projection: the encoder's projected embedding to 4 tokens."""
    projection = ENCODER["projection_dim"]
    return {"image_proj.proj.weight": torch.randn(4 * cross_width, projection, generator=generator) / projection**0.5,
            "image_proj.proj.bias": torch.zeros(4 * cross_width),
            "image_proj.norm.weight": torch.ones(cross_width), "image_proj.norm.bias": torch.zeros(cross_width)}


def build_identity_adapter(folder: Path, model: Path, *, seed: int = SEED, cross_width: int | None = None,
                           with_encoder: bool = True, plus: bool = True) -> Path:
    """An adapter for the diffusers model at `model` (its UNet's layers) in `folder`: IP-Adapter Plus, or the
    plain one with `plus` False; `cross_width` other than the model's makes one for another family."""
    unet_config = model / "unet" / "config.json"
    cross = cross_width or json.loads(unet_config.read_text())["cross_attention_dim"]
    generator = torch.Generator().manual_seed(seed)
    state = (resampler_state(generator, ENCODER["hidden_size"], cross) if plus
             else plain_projection_state(generator, cross))
    for n, width in enumerate(cross_attention_widths(unet_config)):
        key_id = 2 * n + 1  # diffusers numbers the cross-attention layers 1, 3, 5, ...
        for name in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{key_id}.{name}.weight"] = torch.randn(width, cross, generator=generator) * 0.5
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "ip_adapter.safetensors"))
    if with_encoder:
        build_image_encoder(folder / "image_encoder", seed)
    return folder


def build_faceid_adapter(folder: Path) -> Path:
    """The tensor names of an InsightFace-based FaceID adapter (refused), with a CLIP encoder beside it."""
    generator = torch.Generator().manual_seed(SEED)
    state = {"image_proj.proj.0.weight": torch.randn(64, 512, generator=generator),
             "image_proj.proj.2.weight": torch.randn(256, 64, generator=generator),
             "image_proj.norm.weight": torch.ones(64), "image_proj.norm.bias": torch.zeros(64),
             "ip_adapter.1.to_k_ip.weight": torch.randn(64, 64, generator=generator)}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "ip_adapter.safetensors"))
    build_image_encoder(folder / "image_encoder")
    return folder
