"""The diffusion engine a worker process keeps warm.

One img2img pipeline per process, loaded once. Every installed pack's LoRA is
loaded once too (see worker/lora_modes.py for the three ways it is kept);
choosing a pack is then a matter of which one is active (``switch_pack``),
never a reload of the base model or of the LoRA files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from django.conf import settings
from PIL import Image

from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import detect_family as modelstore_family
from avatarapp.modelstore.store import read_record
from avatarapp.packs.manifest import MODEL_SCHEDULER, SCHEDULERS, LoraFile
from worker.errors import EngineError
from worker.lora_modes import LoraMode, make_lora_mode, resolve_lora_mode

log = logging.getLogger(__name__)

# The active pack before the first switch: loading a LoRA leaves it active as a side effect.
UNKNOWN = "<unknown>"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
    scheduler: str = MODEL_SCHEDULER


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
        if setting not in DTYPES:
            raise EngineError(f"unknown dtype {setting!r}; use auto or one of {', '.join(DTYPES)}")
        return DTYPES[setting]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32



def detect_family(path: Path) -> str:
    """demo, sd15 or sdxl: from the folder's marker, its pipeline class, or a checkpoint's tensor names
    (read from its header, without loading a weight: the same check import_model makes)."""
    try:
        return modelstore_family(path)
    except ModelStoreError as e:
        raise EngineError(f"could not tell the model family of {path}: {e}") from e


def capped(steps: int, width: int, height: int, max_steps: int, max_side: int) -> tuple[int, int, int]:
    """Steps and size within the operator's caps (0 = none); the size keeps its aspect, in multiples of 8."""
    if max_steps:
        steps = min(steps, max_steps)
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = (max(8, int(side * scale) // 8 * 8) for side in (width, height))
    return steps, width, height


def fit_photo(photo: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop the photo to the output's aspect ratio, then resize to it."""
    photo = photo.convert("RGB")
    scale = max(width / photo.width, height / photo.height)
    resized = photo.resize((max(width, round(photo.width * scale)), max(height, round(photo.height * scale))),
                           Image.Resampling.LANCZOS)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def locate_model(base_model: str) -> tuple[Path, str]:
    """Where AVATAR_BASE_MODEL's weights are, and the local config folder a single checkpoint needs ("" if none).

    It may be a path (a diffusers folder, an installed model's folder, a .safetensors checkpoint)
    or the bare name of a model `fetch_model`/`import_model` installed under AVATAR_MODELS_DIR.
    An installed single checkpoint is loaded from its file with the configs beside it.
    """
    path = Path(base_model)
    installed = settings.AVATAR_MODELS_DIR / base_model
    if not path.exists() and base_model and "/" not in base_model and installed.exists():
        path = installed
    record = read_record(path) if path.is_dir() else None
    if record is not None and record.get("kind") == "checkpoint" and record.get("checkpoint"):
        return path / str(record["checkpoint"]), str(path)
    return path, ""


def check_base_model(base_model: str) -> Path:
    """The cheap checks made before loading anything: the worker's main process runs them too,
    so a wrong path stops the worker at once, with one message, not in every pool process."""
    path, _ = locate_model(base_model)
    if not path.exists():
        raise EngineError(f"AVATAR_BASE_MODEL {base_model} does not exist (neither a path nor a model installed in "
                          f"{settings.AVATAR_MODELS_DIR}; see `python manage.py fetch_model --list`)")
    if path.is_file() and path.suffix != ".safetensors":
        raise EngineError(f"AVATAR_BASE_MODEL {base_model} is not a .safetensors checkpoint")
    if path.is_dir() and not (path / "model_index.json").is_file():
        raise EngineError(f"AVATAR_BASE_MODEL {base_model} is not a diffusers folder (no model_index.json)")
    return path


class Engine:
    """One warm img2img pipeline and the packs resident on it.

    ``load()`` reads the base model once, ``load_pack()`` each pack's LoRA files once,
    ``switch_pack()`` makes one pack (or none) active, and ``generate()`` runs a batch.
    """

    def __init__(self, base_model: str, *, device: str = "auto", dtype: str = "auto", lora_mode: str = "auto",
                 compile_unet: bool = False, max_lora_rank: int = 64, family: str = "auto",
                 single_file_config: str = "") -> None:
        self.base_model = base_model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.lora_mode = resolve_lora_mode(lora_mode, self.device, compile_unet)
        self.compile_unet = compile_unet
        self.max_lora_rank = max_lora_rank
        self.family = family if family != "auto" else ""
        self.single_file_config = single_file_config  # a local diffusers folder with a checkpoint's configs
        self.pipe: Any = None
        self.lora: LoraMode | None = None
        self.schedulers: dict[str, Any] = {}
        self.loaded_packs: dict[str, str] = {}  # slug -> version loaded
        self.active_pack: tuple[str, bool] | str | None = UNKNOWN  # (slug, fast), or None for no pack
        self.lock = threading.Lock()

    def load(self) -> None:
        """Read the base model (a diffusers folder or one .safetensors checkpoint) and keep it on the device."""
        path = check_base_model(self.base_model)
        installed_config = locate_model(self.base_model)[1]
        self.family = self.family or detect_family(path)
        pipeline_class: Any
        extra: dict[str, Any] = {}
        if self.family == "sdxl":
            pipeline_class = diffusers.StableDiffusionXLImg2ImgPipeline
        else:
            pipeline_class = diffusers.StableDiffusionImg2ImgPipeline
            extra = {"safety_checker": None, "requires_safety_checker": False}
        try:
            if path.is_file():
                # A single checkpoint needs its architecture's configs; with no hub, they come from
                # a local diffusers folder of the same family (AVATAR_BASE_CONFIG).
                config = self.single_file_config or installed_config
                if config:
                    extra["config"] = config
                pipe = pipeline_class.from_single_file(str(path), dtype=self.dtype, local_files_only=True, **extra)
            else:
                pipe = pipeline_class.from_pretrained(str(path), dtype=self.dtype, local_files_only=True, **extra)
        except Exception as e:
            raise EngineError(f"could not load base model {path} as {self.family}: {e}") from e
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.attach(pipe)
        log.info("loaded %s base model %s on %s (%s, LoRA mode %s)", self.family, path, self.device, self.dtype,
                 self.lora_mode)

    def attach(self, pipe: Any) -> None:
        """Run on `pipe`, a pipeline already built (load() calls this; the bench builds its own)."""
        self.pipe = pipe
        self.schedulers = {MODEL_SCHEDULER: pipe.scheduler}
        self.lora = make_lora_mode(self.lora_mode, pipe, self.max_lora_rank, self.compile_unet)
        self.loaded_packs = {}
        self.active_pack = UNKNOWN

    def load_pack(self, slug: str, version: str, folder: Path, loras: Sequence[LoraFile],
                  fast_lora: LoraFile | None = None) -> None:
        """Read a pack's LoRA files (and its optional speed LoRA) once; a new version replaces the old."""
        if self.loaded_packs.get(slug) == version:
            return
        if self.lora is None:
            raise EngineError("the engine is not loaded")
        # Loading leaves the new adapter active as a side effect, so the next switch must be real;
        # and a load that fails half-way leaves the pack unusable rather than stale.
        self.active_pack = UNKNOWN
        self.loaded_packs.pop(slug, None)
        self.lora.load_pack(slug, folder, loras, fast_lora)
        self.loaded_packs[slug] = version

    def switch_pack(self, slug: str | None, fast: bool = False) -> None:
        """Activate a resident pack (with its speed LoRA when `fast`), or none, reloading nothing."""
        if slug is not None and slug not in self.loaded_packs:
            raise EngineError(f"pack {slug} is not loaded")
        wanted = (slug, fast) if slug is not None else None
        if wanted == self.active_pack:
            return
        if self.lora is None:
            raise EngineError("the engine is not loaded")
        self.active_pack = UNKNOWN  # until the switch has completed
        self.lora.activate(slug, fast)
        self.active_pack = wanted

    def use_scheduler(self, name: str) -> None:
        """Swap the sampler (cheap: schedulers hold no weights); MODEL_SCHEDULER is the model's own."""
        if name not in self.schedulers:
            if name not in SCHEDULERS:
                raise EngineError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}")
            scheduler_class = getattr(diffusers, SCHEDULERS[name])
            self.schedulers[name] = scheduler_class.from_config(self.schedulers[MODEL_SCHEDULER].config)
        self.pipe.scheduler = self.schedulers[name]

    def generate(self, request: GenerationRequest,
                 on_step: Callable[[int, int], bool] | None = None) -> list[Image.Image]:
        """Pictures for each seed with the active pack; `on_step(done, total)` returns False to stop early."""
        return VaeImageProcessor.numpy_to_pil(self.generate_array(request, on_step))

    @torch.inference_mode()
    def generate_array(self, request: GenerationRequest,
                       on_step: Callable[[int, int], bool] | None = None) -> np.ndarray:
        """As generate(), as diffusers' output_type="np" gives it: (batch, height, width, 3) floats in 0..1."""
        # 1. Check inputs.
        self.check_inputs(request)
        # 2. Pick the sampler and fit each photo to the output size.
        self.use_scheduler(request.scheduler)
        inits = [fit_photo(image, request.width, request.height) for image in request.images]
        # 3. One generator per picture, so a seed gives the same picture alone or in a batch.
        batch = len(request.seeds)
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in request.seeds]
        # img2img denoises the last `strength` share of the schedule.
        total = max(1, int(request.steps * request.strength))

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            if on_step is not None and on_step(step + 1, total) is False:
                pipe._interrupt = True
            return kwargs

        # 4. Denoise and decode.
        result = self.pipe(
            prompt=[request.prompt] * batch,
            negative_prompt=[request.negative_prompt] * batch if request.negative_prompt else None,
            image=inits,
            strength=request.strength,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generators,
            callback_on_step_end=callback,
            output_type="np",
        )
        return result.images

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
    """The process's warm engine, built from the settings and loaded on first use."""
    global _engine
    if _engine is None:
        torch.set_num_threads(settings.AVATAR_TORCH_THREADS)
        engine = Engine(
            base_model=settings.AVATAR_BASE_MODEL,
            device=settings.AVATAR_DEVICE,
            dtype=settings.AVATAR_DTYPE,
            lora_mode=settings.AVATAR_LORA_MODE,
            compile_unet=settings.AVATAR_COMPILE,
            max_lora_rank=settings.AVATAR_MAX_LORA_RANK,
            family=settings.AVATAR_BASE_FAMILY,
            single_file_config=settings.AVATAR_BASE_CONFIG,
        )
        engine.load()
        _engine = engine
    return _engine
