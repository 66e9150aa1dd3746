"""The diffusion engine a worker process keeps warm.

One img2img pipeline per process, loaded once. Every installed pack's LoRA is
loaded once too (see worker/lora_modes.py for the three ways it is kept);
choosing a pack is then a matter of which one is active (``switch_pack``),
never a reload of the base model or of the LoRA files.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from django.conf import settings
from PIL import Image
from safetensors import safe_open

from avatarapp.modelstore import identity as identity_store
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import detect_family as modelstore_family
from avatarapp.modelstore.identity import ENCODER_DIR, identity_adapter_problem, resolve_identity_adapter
from avatarapp.modelstore.store import read_record
from avatarapp.packs.manifest import MODEL_SCHEDULER, SCHEDULERS, LoraFile
from worker.errors import EngineError
from worker.lora_modes import Likeness, LoraMode, make_lora_mode, resolve_lora_mode

log = logging.getLogger(__name__)
IDENTITY_SETTING = identity_store.SETTING
IDENTITY_WEIGHTS = identity_store.WEIGHTS_NAME

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
    # The identity adapter's reference (the selfie's face crop), one per picture, and how strongly
    # it steers them: 0, or no images, runs exactly as if no adapter were loaded.
    identity_images: list[Image.Image] | None = None
    identity_strength: float = 0.0


# The cross-attention width of each family's UNet, to name the family an adapter was made for.
CROSS_ATTENTION_FAMILIES = {768: "sd15", 2048: "sdxl"}


@dataclass
class IdentityAdapter:
    """The loaded IP-Adapter: how its image encoder's output is taken, and the empty embedding's shape."""

    folder: Path
    kind: str  # "plus" / "full": the encoder's penultimate hidden states; "plain": its projected embedding
    processor: Any  # the CLIPImageProcessor that makes the encoder's input
    embed_shape: tuple[int, ...]  # one picture's embedding, without the batch dimension


def adapter_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a .safetensors file, read from its header without loading a weight."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as e:
        raise EngineError(f"{IDENTITY_SETTING}: cannot read {path} as .safetensors: {e}") from e


def adapter_kind(shapes: dict[str, tuple[int, ...]], where: Path) -> str:
    """plus (the Resampler of IP-Adapter Plus / Plus Face), full (Full Face) or plain (IP-Adapter);
    adapters built on InsightFace embeddings (FaceID) are refused: their face model is non-commercial."""
    proj = {key.removeprefix("image_proj."): shape for key, shape in shapes.items() if key.startswith("image_proj.")}
    if not proj or not any(key.startswith("ip_adapter.") for key in shapes):
        raise EngineError(f"{IDENTITY_SETTING}: {where} is not an IP-Adapter (no image_proj.* and ip_adapter.* "
                          f"tensors)")
    if "latents" in proj and "proj_in.weight" in proj:
        return "plus"
    if "proj.3.weight" in proj:
        return "full"
    if "proj.weight" in proj and "norm.weight" in proj:
        return "plain"
    if "norm.weight" in proj or any(key.startswith("perceiver_resampler.") for key in proj):
        raise EngineError(f"{IDENTITY_SETTING}: {where} is a FaceID adapter, built on InsightFace face embeddings "
                          f"whose models are licensed for non-commercial research only; Chhavi takes IP-Adapters "
                          f"with a CLIP image encoder (e.g. IP-Adapter Plus Face)")
    raise EngineError(f"{IDENTITY_SETTING}: {where} is an IP-Adapter of a kind Chhavi does not know")


def encoder_config(folder: Path) -> dict[str, Any]:
    """The image encoder's vision settings (a full CLIP config keeps them under vision_config)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EngineError(f"{IDENTITY_SETTING}: cannot read {folder / 'config.json'}: {e}") from e
    vision = config.get("vision_config", config) if isinstance(config, dict) else None
    if not isinstance(vision, dict) or not all(k in vision for k in ("hidden_size", "image_size", "patch_size")):
        raise EngineError(f"{IDENTITY_SETTING}: {folder / 'config.json'} is not a CLIP vision model's config")
    return vision


def check_adapter_fits(shapes: dict[str, tuple[int, ...]], kind: str, vision: dict[str, Any], unet: Any,
                       family: str, where: Path) -> None:
    """The adapter was made for this UNet (its family) and for this image encoder, or EngineError says which not."""
    cross = int(unet.config.cross_attention_dim)
    widths = {shape[1] for key, shape in shapes.items() if key.endswith(".to_k_ip.weight")}
    if widths != {cross}:
        made_for = ", ".join(CROSS_ATTENTION_FAMILIES.get(w, f"a model of cross-attention width {w}")
                             for w in sorted(widths))
        raise EngineError(f"{IDENTITY_SETTING}: {where} is made for {made_for}, but the base model is {family} "
                          f"(cross-attention width {cross}); use the adapter of the model's family")
    layers = sum(1 for name in unet.attn_processors if not name.endswith("attn1.processor"))
    found = sum(1 for key in shapes if key.endswith(".to_k_ip.weight"))
    if found != layers:
        raise EngineError(f"{IDENTITY_SETTING}: {where} has {found} cross-attention layers, the base model's UNet "
                          f"has {layers}: it is made for another architecture")
    input_key, encoder_key = {"plus": ("image_proj.proj_in.weight", "hidden_size"),
                              "full": ("image_proj.proj.0.weight", "hidden_size"),
                              "plain": ("image_proj.proj.weight", "projection_dim")}[kind]
    wanted, have = shapes[input_key][1], vision.get(encoder_key)
    if wanted != have:
        raise EngineError(f"{IDENTITY_SETTING}: {where} takes image features of width {wanted}, but its image "
                          f"encoder ({ENCODER_DIR}/config.json) gives {have}: the encoder is not the one the adapter "
                          f"was trained with")


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
                 single_file_config: str = "", identity_adapter: str = "") -> None:
        self.base_model = base_model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.lora_mode = resolve_lora_mode(lora_mode, self.device, compile_unet)
        self.compile_unet = compile_unet
        self.max_lora_rank = max_lora_rank
        self.family = family if family != "auto" else ""
        self.single_file_config = single_file_config  # a local diffusers folder with a checkpoint's configs
        self.identity_adapter = identity_adapter  # AVATAR_IDENTITY_ADAPTER: a folder or an installed name; "" = none
        self.identity: IdentityAdapter | None = None
        self.pipe: Any = None
        self.lora: LoraMode | None = None
        self.schedulers: dict[str, Any] = {}
        self.loaded_packs: dict[str, str] = {}  # slug -> version loaded
        self.loaded_likeness: list[str] = []  # likeness models loaded, the least recently used first
        # (slug, fast, likeness), or None for no pack and no likeness model
        self.active_pack: tuple[str | None, bool, Likeness | None] | str | None = UNKNOWN
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
        self.pipe = pipe
        # Before any LoRA: the adapter replaces the UNet's attention processors, the LoRA wraps its layers.
        if self.identity_adapter:
            self.load_identity_adapter(self.identity_adapter)
        self.attach(pipe)
        log.info("loaded %s base model %s on %s (%s, LoRA mode %s)", self.family, path, self.device, self.dtype,
                 self.lora_mode)

    def load_identity_adapter(self, setting: str) -> None:
        """Load the IP-Adapter and its CLIP image encoder once, from local files only, after checking that
        the folder is complete and that the adapter was made for this model and this encoder."""
        problem = identity_adapter_problem(setting, settings.AVATAR_MODELS_DIR)
        if problem:
            raise EngineError(problem)
        if self.compile_unet:
            # Each pack's identity strength is an attribute of every attention processor: a compiled
            # UNet would recompile whenever it changed.
            raise EngineError(f"{IDENTITY_SETTING} cannot be combined with AVATAR_COMPILE: a compiled UNet would "
                              f"recompile for every identity strength; turn one of them off")
        folder = resolve_identity_adapter(setting, settings.AVATAR_MODELS_DIR)
        weights = folder / IDENTITY_WEIGHTS
        shapes = adapter_shapes(weights)
        kind = adapter_kind(shapes, weights)
        vision = encoder_config(folder / ENCODER_DIR)
        check_adapter_fits(shapes, kind, vision, self.pipe.unet, self.family, weights)
        try:
            self.pipe.load_ip_adapter(str(folder), subfolder="", weight_name=IDENTITY_WEIGHTS,
                                      image_encoder_folder=ENCODER_DIR, local_files_only=True)
        except Exception as e:
            raise EngineError(f"{IDENTITY_SETTING}: could not load the identity adapter from {folder}: {e}") from e
        self.pipe.set_ip_adapter_scale(0.0)
        processor = image_processor(folder / ENCODER_DIR, vision)
        self.identity = IdentityAdapter(folder=folder, kind=kind, processor=processor,
                                        embed_shape=embedding_shape(kind, vision))
        log.info("loaded the identity adapter %s (IP-Adapter %s)", folder, kind)

    def attach(self, pipe: Any) -> None:
        """Run on `pipe`, a pipeline already built (load() calls this; the bench builds its own)."""
        self.pipe = pipe
        self.schedulers = {MODEL_SCHEDULER: pipe.scheduler}
        self.lora = make_lora_mode(self.lora_mode, pipe, self.max_lora_rank, self.compile_unet)
        self.loaded_packs = {}
        self.loaded_likeness = []
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

    def load_likeness(self, key: str, read: Callable[[], dict[str, torch.Tensor]], keep: int = 4) -> None:
        """Hold a likeness model's LoRA beside the packs, reading it with `read()` only when it is not
        held already; past `keep` of them, the least recently used goes."""
        if self.lora is None:
            raise EngineError("the engine is not loaded")
        if key in self.loaded_likeness:
            self.loaded_likeness.remove(key)
            self.loaded_likeness.append(key)
            return
        self.active_pack = UNKNOWN
        while len(self.loaded_likeness) >= keep:
            self.lora.unload_likeness(self.loaded_likeness.pop(0))
        self.lora.load_likeness(key, read())
        self.loaded_likeness.append(key)

    def unload_likeness(self, key: str) -> None:
        if self.lora is not None and key in self.loaded_likeness:
            self.active_pack = UNKNOWN
            self.loaded_likeness.remove(key)
            self.lora.unload_likeness(key)

    def switch_pack(self, slug: str | None, fast: bool = False, likeness: Likeness | None = None) -> None:
        """Activate a resident pack (with its speed LoRA when `fast`, and a resident likeness model at its
        weight), or none, reloading nothing."""
        if slug is not None and slug not in self.loaded_packs:
            raise EngineError(f"pack {slug} is not loaded")
        if likeness is not None and likeness[0] not in self.loaded_likeness:
            raise EngineError(f"likeness model {likeness[0]} is not loaded")
        wanted = (slug, fast, likeness) if slug is not None or likeness is not None else None
        if wanted == self.active_pack:
            return
        if self.lora is None:
            raise EngineError("the engine is not loaded")
        self.active_pack = UNKNOWN  # until the switch has completed
        self.lora.activate(slug, fast, likeness)
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

        # 4. The identity adapter's embeddings, one per picture (none without an adapter).
        identity = self.identity_embeds(request, batch)
        extra = {"ip_adapter_image_embeds": identity} if identity is not None else {}
        # 5. Denoise and decode.
        with per_picture_embeds(self.pipe, identity):
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
                **extra,
            )
        return result.images

    def identity_embeds(self, request: GenerationRequest, batch: int) -> list[torch.Tensor] | None:
        """The IP-Adapter embeddings of this batch (None without an adapter); with one, each face crop's
        at the request's strength, or (strength 0, or no faces) a scale of 0, which diffusers' attention
        skips entirely, so the pictures are those of a run without the adapter."""
        if self.identity is None:
            if request.identity_strength > 0:
                log.warning("a request asks for identity strength %g but this worker has no identity adapter "
                            "(%s); running without it", request.identity_strength, IDENTITY_SETTING)
            return None
        wanted = request.identity_strength > 0 and bool(request.identity_images)
        self.pipe.set_ip_adapter_scale(request.identity_strength if wanted else 0.0)
        if wanted:
            embeds, negative = self.encode_faces(request.identity_images or [])
        else:
            # The adapter's projection still runs on something (diffusers requires an embedding once an
            # adapter is loaded); zeros of the right shape cost nothing and are never attended to at scale 0.
            embeds = torch.zeros((batch, *self.identity.embed_shape), device=self.pipe.device, dtype=self.pipe.dtype)
            negative = embeds
        # Classifier-free guidance runs the negative half of the batch first, as the prompts do.
        if request.guidance > 1 and self.pipe.unet.config.time_cond_proj_dim is None:
            embeds = torch.cat([negative, embeds])
        return [embeds[:, None]]  # one adapter; one reference image per picture

    def encode_faces(self, faces: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each reference face's embedding and the unconditional one, the way diffusers' encode_image makes them
        (the penultimate hidden states of a black image for Plus adapters, zeros for plain ones), per picture."""
        assert self.identity is not None
        pixels = self.identity.processor(images=[face.convert("RGB") for face in faces], return_tensors="pt")
        pixels = pixels.pixel_values.to(device=self.pipe.device, dtype=self.pipe.image_encoder.dtype)
        encoder = self.pipe.image_encoder
        if self.identity.kind == "plain":
            embeds = encoder(pixels).image_embeds
            return embeds, torch.zeros_like(embeds)
        embeds = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        negative = encoder(torch.zeros_like(pixels[:1]), output_hidden_states=True).hidden_states[-2]
        return embeds, negative.expand_as(embeds)

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
        if not 0 <= request.identity_strength <= 1:
            raise ValueError(f"identity strength must be in [0, 1], got {request.identity_strength}")
        if request.identity_images and len(request.identity_images) != len(request.seeds):
            raise ValueError(f"one identity image per seed: got {len(request.identity_images)} for "
                             f"{len(request.seeds)} seeds")


@contextmanager
def per_picture_embeds(pipe: Any, embeds: list[torch.Tensor] | None) -> Iterator[None]:
    """For one call, hand the pipeline the IP-Adapter embeddings exactly as prepared, one per picture.

    diffusers treats ``ip_adapter_image_embeds`` as one reference shared by the whole batch and repeats
    it for every prompt; a Chhavi batch mixes jobs, each with its own selfie, so repeating would let one
    person's face into another's pictures. The pipeline's preparation step is therefore replaced, on
    this instance and for this call only, by one that returns the embeddings as they are (negative
    half first under guidance, as diffusers lays them out itself).
    """
    if embeds is None:
        yield
        return
    pipe.prepare_ip_adapter_image_embeds = lambda *args, **kwargs: embeds
    try:
        yield
    finally:
        del pipe.prepare_ip_adapter_image_embeds


def image_processor(folder: Path, vision: dict[str, Any]) -> Any:
    """The encoder's own CLIPImageProcessor when its folder has one, else CLIP's standard one at its size
    (what diffusers makes itself; h94's image_encoder folder ships no preprocessor config)."""
    from transformers import CLIPImageProcessor

    if (folder / "preprocessor_config.json").is_file():
        return CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
    size = int(vision["image_size"])
    return CLIPImageProcessor(size=size, crop_size=size)


def embedding_shape(kind: str, vision: dict[str, Any]) -> tuple[int, ...]:
    """One picture's embedding: (patches + 1, width) of hidden states, or the projected vector."""
    if kind == "plain":
        return (int(vision["projection_dim"]),)
    patches = (int(vision["image_size"]) // int(vision["patch_size"])) ** 2
    return (patches + 1, int(vision["hidden_size"]))


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
            identity_adapter=settings.AVATAR_IDENTITY_ADAPTER,
        )
        engine.load()
        _engine = engine
    return _engine
