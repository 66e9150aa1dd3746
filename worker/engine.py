"""The diffusion engine a worker process keeps warm.

One pipeline per process, loaded once. Every installed pack's LoRA is loaded
once as a named peft adapter on that pipeline; choosing a pack is then only a
matter of which adapter is active (``switch_pack``), never a reload of the
base model or of the LoRA files.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

log = logging.getLogger(__name__)


UNKNOWN = "<unknown>"


class EngineError(Exception):
    """A model or pack problem the operator must fix, with a message that says what."""


@dataclass
class GenerationRequest:
    image: Image.Image
    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    guidance: float
    strength: float
    width: int
    height: int


def pick_device(setting: str) -> str:
    if setting and setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, setting: str = "auto") -> torch.dtype:
    if setting and setting != "auto":
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[setting]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def fit_photo(photo: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop the photo to the output's aspect ratio, then resize to it."""
    photo = photo.convert("RGB")
    scale = max(width / photo.width, height / photo.height)
    resized = photo.resize((max(width, round(photo.width * scale)), max(height, round(photo.height * scale))),
                           Image.Resampling.LANCZOS)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


class Engine:
    def __init__(self, base_model: str, device: str = "auto", dtype: str = "auto"):
        self.base_model = base_model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.pipe = None
        self.loaded_packs: dict[str, str] = {}  # slug -> version loaded
        # UNKNOWN until the first switch: loading a LoRA leaves it active as a side effect.
        self.active_pack: str | None = UNKNOWN
        self.lock = threading.Lock()

    # 1. Load the base model once.
    def load(self) -> None:
        from diffusers import StableDiffusionImg2ImgPipeline

        path = Path(self.base_model)
        if not path.exists():
            raise EngineError(f"AVATAR_BASE_MODEL {self.base_model} does not exist")
        try:
            if path.is_file():
                if path.suffix != ".safetensors":
                    raise EngineError(f"{path} is not a .safetensors checkpoint")
                pipe = StableDiffusionImg2ImgPipeline.from_single_file(
                    str(path), torch_dtype=self.dtype, local_files_only=True)
            else:
                if not (path / "model_index.json").is_file():
                    raise EngineError(f"{path} is not a diffusers folder (no model_index.json)")
                pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
                    str(path), torch_dtype=self.dtype, local_files_only=True,
                    safety_checker=None, requires_safety_checker=False)
        except EngineError:
            raise
        except Exception as e:
            raise EngineError(f"could not load base model {path}: {e}") from e
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        log.info("loaded base model %s on %s (%s)", path, self.device, self.dtype)

    # 2. Load every pack's LoRA once, as a named adapter.
    def load_pack(self, slug: str, version: str, folder: Path, loras: list[dict]) -> None:
        if self.loaded_packs.get(slug) == version:
            return
        if slug in self.loaded_packs:
            self.pipe.delete_adapters([slug])
        if not loras:
            self.loaded_packs[slug] = version
            return
        if len(loras) > 1:
            raise EngineError(f"pack {slug}: more than one LoRA file is not supported yet")
        lora = loras[0]
        try:
            self.pipe.load_lora_weights(str(folder), weight_name=lora["file"], adapter_name=slug)
        except Exception as e:
            raise EngineError(f"pack {slug}: could not load {lora['file']}: {e}") from e
        self.loaded_packs[slug] = version
        self.active_pack = UNKNOWN  # loading activated the new adapter; the next switch must be real

    # 3. Make one pack (or none) active on the warm pipeline.
    def switch_pack(self, slug: str | None, weight: float = 1.0) -> None:
        if slug is not None and self.loaded_packs.get(slug) is None:
            raise EngineError(f"pack {slug} is not loaded")
        if slug == self.active_pack:
            return
        adapters = self.pipe.get_list_adapters().get("unet", [])
        if slug is None or slug not in adapters:
            # No pack, or a pack that is only a prompt: the plain base model.
            if adapters:
                self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()
            self.pipe.set_adapters([slug], adapter_weights=[weight])
        self.active_pack = slug

    # 4. Run img2img for a batch of seeds.
    @torch.inference_mode()
    def generate(self, request: GenerationRequest,
                 on_step: Callable[[int, int], bool] | None = None) -> list[Image.Image]:
        """Images for each seed; `on_step(done, total)` returns False to stop early."""
        self.check_inputs(request)
        init = fit_photo(request.image, request.width, request.height)
        batch = len(request.seeds)
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in request.seeds]
        total = max(1, int(request.steps * request.strength))

        def callback(pipe, step, timestep, kwargs):
            if on_step is not None and on_step(step + 1, total) is False:
                pipe._interrupt = True
            return kwargs

        result = self.pipe(
            prompt=[request.prompt] * batch,
            negative_prompt=[request.negative_prompt] * batch if request.negative_prompt else None,
            image=[init] * batch,
            strength=request.strength,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generators,
            callback_on_step_end=callback,
            output_type="pil",
        )
        return list(result.images)

    def check_inputs(self, request: GenerationRequest) -> None:
        if self.pipe is None:
            raise EngineError("the engine is not loaded")
        if not request.seeds:
            raise ValueError("at least one seed is needed")
        if request.width % 8 or request.height % 8:
            raise ValueError(f"width and height must be multiples of 8, got {request.width}x{request.height}")
        if not 0 < request.strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {request.strength}")


_engine: Engine | None = None


def get_engine() -> Engine:
    """The process's warm engine, loaded on first use."""
    global _engine
    if _engine is None:
        from django.conf import settings

        torch.set_num_threads(max(1, int(os.getenv("AVATAR_TORCH_THREADS", os.cpu_count() or 1))))
        engine = Engine(settings.AVATAR_BASE_MODEL, settings.AVATAR_DEVICE)
        engine.load()
        _engine = engine
    return _engine
