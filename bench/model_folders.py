"""Model folders with the real Stable Diffusion 1.5 architecture and seeded random weights.

No real weights exist on a machine without the model hub, yet what an operator's model does
to the worker (start time, memory, seconds per step, every pack running through the real
queue) depends on its dimensions, not on its weights. These folders have SD1.5's exact
UNet, CLIP text encoder and VAE dimensions, in the diffusers layout `fetch_model` installs,
so the worker loads them as it would the real thing. The tokenizer is the demo model's (a
real byte-level BPE over a smaller vocabulary, whose ids all fit SD1.5's 49408 embeddings).
The tests build one (tests/test_real_architecture.py) and so does `make bench`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

SEED = 20261203
MARKER = "chhavi_architecture.json"  # says what built the folder, so a current one is reused

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8,
)
SD15_TEXT_ENCODER = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
)
SD15_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
)


def build_sd15_folder(folder: Path, tokenizer_from: Path) -> Path:
    """Write (once) a diffusers SD1.5 folder with seeded random weights; the demo model lends its tokenizer."""
    wanted = {"architecture": "sd15", "seed": SEED}
    if (folder / MARKER).is_file() and json.loads((folder / MARKER).read_text()) == wanted:
        return folder
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    # Built on the meta device and filled in bulk: PyTorch's per-layer initialisers take
    # minutes for a billion parameters on two cores; small random values serve as well here.
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT_ENCODER))
        vae = AutoencoderKL(**SD15_VAE)
    generator = torch.Generator().manual_seed(SEED)
    for model in (unet, text_encoder, vae):
        model.to_empty(device="cpu")
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "norm_out.weight",
                                  "layer_norm1.weight", "layer_norm2.weight", "final_layer_norm.weight")):
                    tensor.fill_(1.0)
                elif tensor.dim() <= 1:
                    tensor.zero_()
                else:
                    fan_in = tensor[0].numel()
                    tensor.normal_(0.0, 1.0 / fan_in ** 0.5, generator=generator)
        for buffer_owner in model.modules():  # e.g. the text encoder's position ids
            for name, buffer in buffer_owner.named_buffers(recurse=False):
                if name == "position_ids":
                    buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_from, subfolder="tokenizer", local_files_only=True)
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                   unet=unet.eval(), scheduler=PNDMScheduler(**SD15_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    staging = folder.with_name(folder.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging, safe_serialization=True)
    (staging / MARKER).write_text(json.dumps(wanted) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder
