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
    """One batch: the same pack and settings, one init image and one seed per picture."""

    images: list[Image.Image]
    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    guidance: float
    strength: float
    width: int
    height: int
    scheduler: str = ""


def _scheduler_classes() -> dict:
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, LCMScheduler)

    return {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler,
            "euler_a": EulerAncestralDiscreteScheduler, "lcm": LCMScheduler}


# Name -> factory returning the class; "lcm" gives packs a 4-step fast mode.
SCHEDULERS = {name: (lambda name=name: _scheduler_classes()[name])
              for name in ("ddim", "dpm", "euler", "euler_a", "lcm")}


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


def detect_family(path: Path) -> str:
    """sd15 or sdxl, from a diffusers folder's pipeline class or a checkpoint's tensor names."""
    if path.is_dir():
        import json

        class_name = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
        return "sdxl" if "XL" in class_name else "sd15"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = f.keys()
    # SDXL checkpoints carry a second text encoder under conditioner.embedders.1.
    return "sdxl" if any(k.startswith("conditioner.embedders.1") for k in keys) else "sd15"


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
    def __init__(self, base_model: str, device: str = "auto", dtype: str = "auto", lora_mode: str = "auto",
                 compile_unet: bool = False, max_lora_rank: int = 64, family: str = "auto",
                 single_file_config: str = ""):
        self.base_model = base_model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        # "active": every pack's LoRA stays unfused and a switch only changes which one each
        # layer applies (well under a millisecond). "fused": the active pack is merged into the
        # base weights so a step costs exactly what the base model costs; merging is a few
        # small matmuls per layer, instant on a GPU, where unfused LoRA kernels cost the most.
        self.lora_mode = lora_mode if lora_mode != "auto" else ("fused" if self.device == "cuda" else "active")
        # With torch.compile, changing which adapter a layer applies would recompile the UNet.
        # "hotswap" keeps one adapter slot and swaps new weights into it in place (diffusers'
        # LoRA hotswap), which the compiled graph does not notice.
        self.compile_unet = compile_unet
        self.max_lora_rank = max_lora_rank
        if compile_unet:
            self.lora_mode = "hotswap"
        self.hotswap_states: dict[str, dict] = {}
        self.family = family if family != "auto" else ""
        self.single_file_config = single_file_config
        self.hotswap_loaded = False
        self.lora_layers: list = []
        self.pristine_weights: dict[int, torch.Tensor] = {}
        self.pack_adapters: dict[str, list[str]] = {}
        self.fast_adapters: dict[str, str | None] = {}
        self.schedulers: dict = {}
        self.pipe = None
        self.loaded_packs: dict[str, str] = {}  # slug -> version loaded
        # UNKNOWN until the first switch: loading a LoRA leaves it active as a side effect.
        self.active_pack: str | None = UNKNOWN
        self.lock = threading.Lock()

    # 1. Load the base model once.
    def load(self) -> None:
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

        path = Path(self.base_model)
        if not path.exists():
            raise EngineError(f"AVATAR_BASE_MODEL {self.base_model} does not exist")
        if path.is_file() and path.suffix != ".safetensors":
            raise EngineError(f"{path} is not a .safetensors checkpoint")
        if path.is_dir() and not (path / "model_index.json").is_file():
            raise EngineError(f"{path} is not a diffusers folder (no model_index.json)")
        try:
            self.family = self.family or detect_family(path)
        except Exception as e:
            raise EngineError(f"could not read {path}: {e}") from e
        pipeline_class = StableDiffusionXLImg2ImgPipeline if self.family == "sdxl" else StableDiffusionImg2ImgPipeline
        extra = {} if self.family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        try:
            if path.is_file():
                # A single checkpoint needs its architecture's configs; with no hub, they come from
                # a local diffusers folder of the same family (AVATAR_BASE_CONFIG).
                if self.single_file_config:
                    extra["config"] = self.single_file_config
                pipe = pipeline_class.from_single_file(str(path), dtype=self.dtype, local_files_only=True, **extra)
            else:
                pipe = pipeline_class.from_pretrained(str(path), dtype=self.dtype, local_files_only=True, **extra)
        except Exception as e:
            raise EngineError(f"could not load base model {path} as {self.family}: {e}") from e
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.schedulers = {"": pipe.scheduler}
        if self.lora_mode == "hotswap":
            pipe.enable_lora_hotswap(target_rank=self.max_lora_rank)
        log.info("loaded %s base model %s on %s (%s)", self.family, path, self.device, self.dtype)

    # 2. Load every pack's LoRA once, as a named adapter.
    def load_pack(self, slug: str, version: str, folder: Path, loras: list[dict],
                  fast_lora: dict | None = None) -> None:
        """Load a pack's LoRA files (and its optional speed LoRA) once, as named adapters."""
        if self.loaded_packs.get(slug) == version:
            return
        if self.lora_mode == "hotswap":
            self.hotswap_states[slug] = self.read_hotswap_state(slug, folder, loras)
            self.loaded_packs[slug] = version
            self.active_pack = UNKNOWN
            return
        old = self.pack_adapters.get(slug, []) + ([self.fast_adapters[slug]] if self.fast_adapters.get(slug) else [])
        self.unfuse()
        if old:
            self.pipe.delete_adapters(old)
        files = [(f"{slug}__{i}" if i else slug, lora) for i, lora in enumerate(loras)]
        if fast_lora:
            files.append((f"{slug}__fast", fast_lora))
        for name, lora in files:
            try:
                self.pipe.load_lora_weights(str(folder), weight_name=lora["file"], adapter_name=name)
            except Exception as e:
                raise EngineError(f"pack {slug}: could not load {lora['file']}: {e}") from e
        self.lora_layers = self.find_lora_layers()
        for name, lora in files:
            for layer in self.lora_layers:
                if name in layer.lora_A:
                    layer.set_scale(name, float(lora.get("weight", 1.0)))
        self.pack_adapters[slug] = [name for name, _ in files if not name.endswith("__fast")]
        self.fast_adapters[slug] = f"{slug}__fast" if fast_lora else None
        self.loaded_packs[slug] = version
        self.active_pack = UNKNOWN  # loading activated the new adapter; the next switch must be real

    def read_hotswap_state(self, slug: str, folder: Path, loras: list[dict]) -> dict:
        """The pack's LoRA as an in-memory state dict, ready to be swapped into the slot."""
        if len(loras) != 1:
            raise EngineError(f"pack {slug}: compile mode needs exactly one LoRA file per pack")
        state, _ = self.pipe.lora_state_dict(str(folder / loras[0]["file"]))
        weight = float(loras[0].get("weight", 1.0))
        # The pack's weight is folded into lora_B so the slot's scale never changes.
        return {k: (v * weight if "lora_B" in k or "lora_up" in k else v) for k, v in state.items()}

    def hotswap(self, slug: str | None) -> None:
        state = self.hotswap_states[slug] if slug else None
        if state is None:
            # "No pack" is the slot holding zeros: the same graph, adding nothing.
            any_state = next(iter(self.hotswap_states.values()))
            state = {k: (torch.zeros_like(v) if "lora_B" in k or "lora_up" in k else v) for k, v in any_state.items()}
        self.pipe.load_lora_weights(state, adapter_name="slot", hotswap=self.hotswap_loaded)
        if not self.hotswap_loaded:
            self.hotswap_loaded = True
            self.pipe.unet = torch.compile(self.pipe.unet) if self.compile_unet else self.pipe.unet

    def find_lora_layers(self) -> list:
        from peft.tuners.tuners_utils import BaseTunerLayer

        modules = [self.pipe.unet, self.pipe.text_encoder] + ([self.pipe.text_encoder_2] if getattr(
            self.pipe, "text_encoder_2", None) is not None else [])
        return [m for model in modules for m in model.modules() if isinstance(m, BaseTunerLayer)]

    def unfuse(self) -> None:
        """Put the base weights back. From the saved copy, not by subtracting the LoRA again:
        in bf16/fp16, merge-then-unmerge does not round-trip and repeated switches would
        slowly corrupt the base model."""
        for layer in self.lora_layers:
            if layer.merged:
                saved = self.pristine_weights.get(id(layer))
                if saved is None:
                    layer.unmerge()
                else:
                    layer.get_base_layer().weight.data.copy_(saved)
                    layer.merged_adapters.clear()

    # 3. Make one pack (or none) active on the warm pipeline.
    def switch_pack(self, slug: str | None, fast: bool = False) -> None:
        """Activate a resident pack's LoRA (plus its speed LoRA when `fast`), or none, reloading nothing."""
        if slug is not None and slug not in self.loaded_packs:
            raise EngineError(f"pack {slug} is not loaded")
        wanted = (slug, fast) if slug is not None else None
        if wanted == self.active_pack:
            return
        if self.lora_mode == "hotswap":
            self.hotswap(slug)  # (a pack's speed LoRA is not used in compile mode)
            self.active_pack = wanted
            return
        names = []
        if slug is not None:
            names = self.pack_adapters.get(slug, []) + ([self.fast_adapters[slug]] if fast and self.fast_adapters.get(slug) else [])
        if self.lora_mode == "fused":
            self.unfuse()
        for layer in self.lora_layers:
            # The same state peft's set_adapter/enable_adapters leave behind, minus their
            # requires_grad bookkeeping, which inference never reads: a switch is one pass
            # of two attribute writes over the LoRA layers.
            present = [name for name in names if name in layer.lora_A]
            if present:
                layer._active_adapter = present
                layer._disable_adapters = False
                if self.lora_mode == "fused":
                    # Keep the layer's untouched weights once (~190 MB in bf16 for SD1.5).
                    self.pristine_weights.setdefault(id(layer), layer.get_base_layer().weight.detach().clone())
                    layer.merge(adapter_names=present)
            else:
                layer._disable_adapters = True
        self.active_pack = wanted

    def use_scheduler(self, name: str) -> None:
        """Swap the sampler (cheap: schedulers hold no weights); "" is the model's own."""
        if name not in self.schedulers:
            if name not in SCHEDULERS:
                raise EngineError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}")
            self.schedulers[name] = SCHEDULERS[name]().from_config(self.schedulers[""].config)
        self.pipe.scheduler = self.schedulers[name]

    # 4. Run img2img for a batch of seeds.
    @torch.inference_mode()
    def generate(self, request: GenerationRequest,
                 on_step: Callable[[int, int], bool] | None = None) -> list[Image.Image]:
        """Images for each seed; `on_step(done, total)` returns False to stop early."""
        self.check_inputs(request)
        self.use_scheduler(request.scheduler)
        inits = [fit_photo(image, request.width, request.height) for image in request.images]
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
            image=inits,
            strength=request.strength,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generators,
            callback_on_step_end=callback,
            output_type="pil",
        )
        return list(result.images)

    def warm_up(self) -> None:
        """One tiny run so the first real job pays no first-call costs (and compiles, if asked)."""
        image = Image.new("RGB", (64, 64), (128, 128, 128))
        self.generate(GenerationRequest(images=[image], prompt="warm up", negative_prompt="", seeds=[0],
                                        steps=2, guidance=1.0, strength=1.0, width=64, height=64))

    def check_inputs(self, request: GenerationRequest) -> None:
        if self.pipe is None:
            raise EngineError("the engine is not loaded")
        if not request.seeds:
            raise ValueError("at least one seed is needed")
        if len(request.images) != len(request.seeds):
            raise ValueError(f"one image per seed: got {len(request.images)} images for {len(request.seeds)} seeds")
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
        engine = Engine(settings.AVATAR_BASE_MODEL, settings.AVATAR_DEVICE, settings.AVATAR_DTYPE,
                        settings.AVATAR_LORA_MODE, settings.AVATAR_COMPILE, settings.AVATAR_MAX_LORA_RANK,
                        settings.AVATAR_BASE_FAMILY, settings.AVATAR_BASE_CONFIG)
        engine.load()
        _engine = engine
    return _engine
