"""Train a LoRA on the UNet of the worker's base model, a chunk of steps at a time.

This knows nothing of packs or rows: it takes pictures with captions and settings, and trains
in chunks that each start from a checkpoint and end with a new one. A chunk run from a checkpoint
gives the same weights, bit for bit on a CPU, whether the steps before it ran in one go or in
chunks, in this process or in one that was killed: everything a step reads is either in the
checkpoint (LoRA weights, optimiser state, the step, the random generator's state) or derived
from the seed and the step (the order the pictures are taken in).

Memory: the trainer keeps its own copy of the base UNet (loaded from the model's files, cached
per worker process) rather than training on the warm engine's. The engine's UNet carries the
packs' adapters, merged into its weights in `fused` mode and compiled in `hotswap` mode, so
training on it would mean undoing all that under the engine's lock for the whole chunk and
redoing it after; one more UNet costs ~1.7 GB (SD1.5, fp16) on the GPU, which a card that
trains has. The text encoder and the VAE are only needed once per run, to encode the pictures
and captions (``encode_samples``): they are the engine's own, used under its lock with no pack
active, and their outputs are kept with the run so later chunks never need them.

Steps follow diffusers' examples/text_to_image/train_text_to_image_lora.py: a LoRA (peft) on
the attention projections, noise added at a random timestep by the model's own noise schedule
(as DDPM), the MSE between the UNet's prediction and the noise (or the velocity, for
v-prediction models), AdamW on the LoRA's parameters only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from PIL import Image

from worker.engine import Engine, locate_model
from worker.errors import EngineError

log = logging.getLogger(__name__)
# diffusers' classes reach the type checker without their torch.nn.Module base: typed loosely here.
Unet = Any

ADAPTER = "chhavi_training"
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
# Timesteps of the fixed probe batch (see probe_loss): spread over the schedule.
PROBE_TIMESTEPS = (100, 300, 500, 700, 900)
PROBE_PICTURES = 8  # the probe looks at the first few pictures only: it is a check, not an evaluation
FAMILIES = ("demo", "sd15")  # SDXL needs pooled text embeddings and time ids: not done yet


@dataclass(frozen=True)
class TrainSettings:
    """What a training run is asked for. `mixed_precision` and `gradient_checkpointing` only act on a GPU."""

    rank: int = 16
    steps: int = 1000
    learning_rate: float = 1e-4
    resolution: int = 512
    seed: int = 0
    batch_size: int = 1
    mixed_precision: str = "auto"  # auto (the engine's half precision on CUDA), no, fp16, bf16
    gradient_checkpointing: bool = True
    # DreamBooth's prior preservation (likeness models): the class pictures' loss, weighted by this,
    # is added to each step's; it acts only when the encodings carry class pictures.
    prior_weight: float = 1.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    image: Path | Image.Image  # a file, or a picture in memory (a likeness run's face crops never touch disk)
    caption: str


@dataclass
class Encoded:
    """The pictures as the VAE's latent distributions and the captions as the text encoder's output."""

    mean: torch.Tensor  # (n, 4, h/8, w/8), the latent distribution's mean (before the scaling factor)
    std: torch.Tensor  # its standard deviation: each step samples a latent, as diffusers' script does
    embeds: torch.Tensor  # (n, tokens, width)
    scaling_factor: float
    prior: Encoded | None = None  # the class pictures of prior preservation (likeness models), encoded alike

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "embeds": self.embeds, "scaling_factor": self.scaling_factor,
                "prior": self.prior.to_json() if self.prior is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Encoded:
        prior = data.get("prior")
        return cls(mean=data["mean"], std=data["std"], embeds=data["embeds"],
                   scaling_factor=float(data["scaling_factor"]),
                   prior=cls.from_json(prior) if prior is not None else None)

    @classmethod
    def load(cls, path: Path) -> Encoded:
        return cls.from_json(torch.load(path, map_location="cpu", weights_only=True))


@dataclass
class Checkpoint:
    """Everything the next step depends on, besides the seed and the pictures."""

    step: int
    lora: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor  # the CPU generator's state: noise, timesteps and latent samples come from it
    cuda_rng: list[torch.Tensor]  # CUDA's own generators (nothing here draws from them; kept for kernels that do)
    losses: list[float]


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise EngineError(f"training LoRAs for {family} models is not supported yet (only {', '.join(FAMILIES)})")


def check_settings(settings: TrainSettings) -> None:
    if settings.resolution % 8 or not 64 <= settings.resolution <= 2048:
        raise ValueError(f"resolution must be a multiple of 8 between 64 and 2048, not {settings.resolution}")
    if not 1 <= settings.rank <= 256:
        raise ValueError(f"rank must be between 1 and 256, not {settings.rank}")
    if settings.steps < 1 or settings.batch_size < 1 or settings.learning_rate <= 0:
        raise ValueError("steps, batch size and learning rate must be positive")


# --- Inputs -----------------------------------------------------------------------------


def picture_tensor(source: Path | Image.Image, resolution: int) -> torch.Tensor:
    """The picture scaled so its shorter side is `resolution`, centre-cropped square, in [-1, 1]."""
    with (Image.open(source) if isinstance(source, Path) else contextlib.nullcontext(source)) as opened:
        image = opened.convert("RGB")
        scale = resolution / min(image.size)
        size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(resolution, resolution, 3).permute(2, 0, 1).float() / 127.5 - 1.0


@torch.no_grad()
def encode_samples(engine: Engine, samples: Sequence[Sample], resolution: int,
                   on_picture: Callable[[], None] | None = None) -> Encoded:
    """Encode the pictures and captions once, with the engine's VAE and text encoder and no pack active.

    A pack's LoRA may reach the text encoder: ``switch_pack(None)`` turns every adapter off (or
    puts the base weights back, in fused mode), under the engine's lock so no job runs meanwhile;
    the next job switches to its own pack as it always does.
    """
    pipe = engine.pipe
    means, stds, embeds = [], [], []
    with engine.lock:
        engine.switch_pack(None)
        for sample in samples:
            pixels = picture_tensor(sample.image, resolution)[None].to(engine.device, pipe.vae.dtype)
            dist = pipe.vae.encode(pixels).latent_dist
            means.append(dist.mean.float().cpu())
            stds.append(dist.std.float().cpu())
            prompt_embeds, _ = pipe.encode_prompt(sample.caption, engine.device, 1, False)
            embeds.append(prompt_embeds.float().cpu())
            if on_picture is not None:
                on_picture()  # a heartbeat: encoding many pictures on a slow machine takes a while
    return Encoded(mean=torch.cat(means), std=torch.cat(stds), embeds=torch.cat(embeds),
                   scaling_factor=float(pipe.vae.config.scaling_factor))


# --- The trainable UNet ---------------------------------------------------------------------

_base_unets: dict[tuple[str, str], Unet] = {}


def base_unet(engine: Engine) -> Unet:
    """The base model's UNet, loaded from its files once per process and kept for later chunks and runs."""
    key = (engine.base_model, engine.device)
    if key not in _base_unets:
        path, config = locate_model(engine.base_model)
        try:
            if path.is_dir():
                unet = UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", local_files_only=True)
            else:
                # A single checkpoint: its UNet through the pipeline loader, which knows the key layout.
                pipe = type(engine.pipe).from_single_file(str(path), config=engine.single_file_config or config or None,
                                                          local_files_only=True)
                unet = pipe.unet
                del pipe
        except Exception as e:
            raise EngineError(f"could not load the UNet of {engine.base_model} for training: {e}") from e
        unet.requires_grad_(False)
        _base_unets.clear()  # one base model per worker
        _base_unets[key] = unet
    return _base_unets[key]


def weight_dtype(engine: Engine, settings: TrainSettings) -> torch.dtype:
    """The frozen base weights' dtype: half precision on CUDA under mixed precision, else fp32."""
    if engine.device != "cuda" or settings.mixed_precision == "no":
        return torch.float32
    if settings.mixed_precision == "fp16":
        return torch.float16
    if settings.mixed_precision == "bf16":
        return torch.bfloat16
    return engine.dtype


@contextlib.contextmanager
def lora_unet(engine: Engine, settings: TrainSettings) -> Iterator[Unet]:
    """The base UNet with a fresh LoRA adapter, removed again when the chunk ends (whatever happens)."""
    unet = base_unet(engine)
    unet.to(engine.device, dtype=weight_dtype(engine, settings))
    config = LoraConfig(r=settings.rank, lora_alpha=settings.rank, init_lora_weights="gaussian",
                        target_modules=TARGET_MODULES)
    # peft draws the initial LoRA A from torch's global generator: seed it for this run, and give
    # the process its own state back afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        unet.add_adapter(config, adapter_name=ADAPTER)
    for param in unet.parameters():
        if param.requires_grad:
            param.data = param.data.float()  # trainable weights in fp32 even when the base is half
    use_checkpointing = engine.device == "cuda" and settings.gradient_checkpointing
    if use_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    try:
        yield unet
    finally:
        unet.eval()
        if use_checkpointing:
            unet.disable_gradient_checkpointing()
        unet.delete_adapters([ADAPTER])
        unet.requires_grad_(False)


def lora_parameters(unet: Unet) -> list[torch.nn.Parameter]:
    # named_parameters' order is the module order: the same in every process, so optimiser states match.
    return [param for _, param in unet.named_parameters() if param.requires_grad]


def new_optimizer(params: list[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=settings.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)


def initial_checkpoint(unet: Unet, settings: TrainSettings) -> Checkpoint:
    """Step 0: the freshly initialised LoRA, an optimiser with no history, the generator at the seed."""
    optimizer = new_optimizer(lora_parameters(unet), settings)
    generator = torch.Generator().manual_seed(settings.seed)
    return Checkpoint(step=0, lora=lora_state(unet), optimizer=optimizer.state_dict(),
                      generator=generator.get_state(), cuda_rng=cuda_states(), losses=[])


def lora_state(unet: Unet) -> dict[str, torch.Tensor]:
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    return {key: value.detach().float().cpu().clone() for key, value in state.items()}


def cuda_states() -> list[torch.Tensor]:
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []


# --- Steps ----------------------------------------------------------------------------------


def noise_scheduler(engine: Engine) -> Any:
    """The model's own noise schedule (betas, prediction type) as the DDPM scheduler training uses."""
    return DDPMScheduler.from_config(engine.pipe.scheduler.config)


def pictures_for_step(step: int, count: int, batch_size: int, seed: int) -> list[int]:
    """The pictures step `step` trains on: each epoch a fresh shuffle seeded by (seed, epoch).

    A pure function of the step, so the data order needs no state of its own in a checkpoint.
    """
    picks = []
    for slot in range(step * batch_size, (step + 1) * batch_size):
        epoch, position = divmod(slot, count)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        picks.append(int(order[position]))
    return picks


def training_target(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    prediction = scheduler.config.prediction_type
    if prediction == "epsilon":
        return noise
    if prediction == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise EngineError(f"cannot train a model that predicts {prediction!r}")


def autocast(engine: Engine, settings: TrainSettings) -> contextlib.AbstractContextManager[Any]:
    dtype = weight_dtype(engine, settings)
    if engine.device == "cuda" and dtype != torch.float32:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def train_chunk(engine: Engine, unet: Unet, encoded: Encoded, settings: TrainSettings,
                start: Checkpoint, until: int, on_step: Callable[[int, float], bool] | None = None) -> Checkpoint:
    """Run steps start.step+1 .. `until` from `start`; the checkpoint after the last one run.

    `on_step(step, loss)` is called after each step (progress, heartbeat, test holds); when it
    returns False the chunk ends there, early, and the next one goes on from that step with the
    same result.
    """
    scheduler = noise_scheduler(engine)
    set_peft_model_state_dict(unet, start.lora, adapter_name=ADAPTER)
    params = lora_parameters(unet)
    optimizer = new_optimizer(params, settings)
    if start.optimizer.get("state"):
        optimizer.load_state_dict(start.optimizer)
    generator = torch.Generator()
    generator.set_state(start.generator)
    losses = list(start.losses)
    device, dtype = engine.device, weight_dtype(engine, settings)
    count = encoded.mean.shape[0]
    done = start.step
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        if start.cuda_rng:
            torch.cuda.set_rng_state_all(start.cuda_rng)
        for step in range(start.step + 1, until + 1):
            picks = pictures_for_step(step - 1, count, settings.batch_size, settings.seed)
            # Every random draw on the CPU generator, in a fixed order: the same on any device.
            sampled = encoded.mean[picks] + encoded.std[picks] * torch.randn(encoded.mean[picks].shape,
                                                                              generator=generator)
            embeds = encoded.embeds[picks]
            prior = encoded.prior
            if prior is not None:
                # Prior preservation: as many class pictures, in the same batch (diffusers' DreamBooth script).
                class_picks = pictures_for_step(step - 1, prior.mean.shape[0], settings.batch_size, settings.seed + 1)
                class_sampled = prior.mean[class_picks] + prior.std[class_picks] * torch.randn(
                    prior.mean[class_picks].shape, generator=generator)
                sampled = torch.cat([sampled, class_sampled])
                embeds = torch.cat([embeds, prior.embeds[class_picks]])
            latents = sampled * encoded.scaling_factor
            noise = torch.randn(latents.shape, generator=generator)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            target = training_target(scheduler, latents, noise, timesteps).to(device).float()
            with autocast(engine, settings):
                prediction = unet(noisy.to(device, dtype), timesteps.to(device),
                                  embeds.to(device, dtype), return_dict=False)[0].float()
            if prior is None:
                loss = F.mse_loss(prediction, target, reduction="mean")
            else:
                instance, kept = prediction.chunk(2), target.chunk(2)
                loss = (F.mse_loss(instance[0], kept[0], reduction="mean")
                        + settings.prior_weight * F.mse_loss(instance[1], kept[1], reduction="mean"))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach().cpu())
            if not math.isfinite(value):
                raise EngineError(f"the training loss became {value} at step {step}: lower the learning rate")
            losses.append(value)
            done = step
            if on_step is not None and not on_step(step, value):
                break
        cuda_rng = cuda_states()
    return Checkpoint(step=done, lora=lora_state(unet), optimizer=optimizer.state_dict(),
                      generator=generator.get_state(), cuda_rng=cuda_rng, losses=losses)


@torch.no_grad()
def probe_loss(engine: Engine, unet: Unet, encoded: Encoded, settings: TrainSettings,
               lora: dict[str, torch.Tensor]) -> float:
    """The loss on a fixed batch (every picture at fixed timesteps with fixed noise): unlike a step's
    loss, which depends on the timestep it drew, it shows whether training lowered the loss."""
    set_peft_model_state_dict(unet, lora, adapter_name=ADAPTER)
    scheduler = noise_scheduler(engine)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    device, dtype = engine.device, weight_dtype(engine, settings)
    total, n = 0.0, 0
    for index in range(min(encoded.mean.shape[0], PROBE_PICTURES)):
        latents = (encoded.mean[index:index + 1] * encoded.scaling_factor).expand(len(PROBE_TIMESTEPS), -1, -1, -1)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.tensor(PROBE_TIMESTEPS)
        target = training_target(scheduler, latents, noise, timesteps)
        embeds = encoded.embeds[index:index + 1].expand(len(PROBE_TIMESTEPS), -1, -1)
        with autocast(engine, settings):
            prediction = unet(scheduler.add_noise(latents, noise, timesteps).to(device, dtype), timesteps.to(device),
                              embeds.to(device, dtype), return_dict=False)[0]
        total += float(F.mse_loss(prediction.float(), target.to(device).float()).cpu())
        n += 1
    return total / n


# --- Files ------------------------------------------------------------------------------


def atomic_save(obj: Any, path: Path) -> None:
    """Write `path` whole or not at all: a killed worker leaves the previous file (or none), never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    atomic_save(asdict(checkpoint), path)


def load_checkpoint(path: Path) -> Checkpoint:
    return Checkpoint(**torch.load(path, map_location="cpu", weights_only=True))


def save_lora(engine: Engine, lora: dict[str, torch.Tensor], folder: Path, weight_name: str) -> Path:
    """The LoRA as diffusers-format .safetensors (``unet.<module>.lora_A.weight``), which the
    engine's loaders and other diffusers tools read."""
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = convert_state_dict_to_diffusers(lora)
    type(engine.pipe).save_lora_weights(save_directory=str(folder), unet_lora_layers=layers,
                                        weight_name=weight_name, safe_serialization=True)
    return folder / weight_name
