"""Style pack training: seconds per step and peak memory on this CPU, and the FLOPs of a step.

    python -m bench --only training [--short]

* The demo model (var/models/demo) and an SD1.5-architecture model (bench/model_folders.py, real
  dimensions, random weights, built once into var/test-models/) train a rank-16 LoRA with the
  worker's own code (worker/training/core.py): pictures encoded once, then steps of batch 1 at a
  small resolution, on one torch thread, timed in process CPU time (and wall time beside it). The
  first step pays for set-up and is left out of the median.
* Peak memory is the process's peak resident set (ru_maxrss) after each model's run: the engine
  the worker keeps warm, plus the trainer's own UNet copy, plus activations and gradients.
* FLOPs of one training step (forward, backward to the LoRA's parameters) at 512² (SD1.5) and
  1024² (SDXL), counted on the meta device, and the time that means on one GPU at a stated share
  of its peak: the README compares it with published figures.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.engine import SDXL_UNET, quiet_libraries
from bench.figures import Figure
from bench.model_folders import SD15_UNET

ROOT = Path(__file__).resolve().parents[1]
PICTURES = [ROOT / "tests" / "fixtures" / name for name in ("portrait.jpg", "selfie_wide.jpg", "portrait.png")]
RANK = 16
# One torch thread, timed in process CPU time: on two cores shared with other work, two threads wait
# at every kernel for whichever one was preempted, and the wall time says more about the neighbours
# (bench/engine.py measures its step ratios the same way). Two quiet cores take a little over half.
TRAIN_THREADS = 1
# One GPU an operator may train on, at a share of its dense BF16/FP16 peak a LoRA step reaches.
GPUS = {"H100 (989 TFLOPS bf16)": 989.0, "RTX 4090 (165 TFLOPS fp16)": 165.0}
UTILISATION = 0.35


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kilobytes


def training_step_flops(config: dict, latent: int, context_dim: int, *, sdxl: bool = False,
                        checkpointing: bool = False) -> float:
    """FLOPs of one training step (batch 1): forward, loss, backward to a rank-16 LoRA, on the meta device.

    With gradient checkpointing the forward runs twice (once more during the backward pass).
    """
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from torch.utils.flop_counter import FlopCounterMode

    from worker.training.core import TARGET_MODULES

    with torch.device("meta"):
        unet: Any = UNet2DConditionModel(**config)  # typed loosely: diffusers' nn.Module base is untyped
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGET_MODULES, init_lora_weights=False))
        sample = torch.empty(1, 4, latent, latent)
        context = torch.empty(1, 77, context_dim)
        timestep = torch.tensor([500])
        extra = {}
        if sdxl:
            extra["added_cond_kwargs"] = {"text_embeds": torch.empty(1, 1280), "time_ids": torch.empty(1, 6)}
    counter = FlopCounterMode(display=False)
    with counter:
        prediction = unet(sample, timestep, context, **extra).sample
        torch.nn.functional.mse_loss(prediction, torch.zeros_like(prediction)).backward()
    total = float(counter.get_total_flops())
    if checkpointing:
        forward = FlopCounterMode(display=False)
        with forward, torch.no_grad():
            unet(sample, timestep, context, **extra)
        total += float(forward.get_total_flops())
    return total


def time_training(model: str, resolution: int, steps: int, prior: bool = False) -> tuple[list[float], list[float]]:
    """Wall seconds and process CPU seconds of each training step after the first (which pays for set-up).

    With `prior`, as a likeness model trains: DreamBooth's prior preservation adds a class picture to
    each step's batch (the same pictures stand in for the class pictures: only the shapes matter here).
    """
    from worker.engine import Engine
    from worker.training import core

    engine = Engine(model, device="cpu", dtype="fp32", lora_mode="active")
    engine.load()
    settings = core.TrainSettings(rank=RANK, steps=steps + 1, learning_rate=1e-4, resolution=resolution, seed=1)
    samples = [core.Sample(path, "bench style") for path in PICTURES]
    encoded = core.encode_samples(engine, samples, resolution)
    if prior:
        encoded.prior = core.encode_samples(engine, samples, resolution)
    marks = [(time.perf_counter(), time.process_time())]

    def on_step(step: int, loss: float) -> bool:
        marks.append((time.perf_counter(), time.process_time()))
        return True

    with core.lora_unet(engine, settings) as unet:
        start = core.initial_checkpoint(unet, settings)
        core.train_chunk(engine, unet, encoded, settings, start, steps + 1, on_step=on_step)
    del engine, unet
    core._base_unets.clear()
    gc.collect()
    pairs = list(zip(marks[1:], marks[2:], strict=False))
    return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]


def run(short: bool) -> list[Figure]:
    from django.conf import settings

    from bench.model_folders import build_sd15_folder

    quiet_libraries()
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    load_before = os.getloadavg()[0]
    figures: list[Figure] = []
    try:
        demo_steps, demo_resolution = (4, 256) if short else (10, 512)
        wall, cpu = time_training(str(settings.VAR_DIR / "models" / "demo"), demo_resolution, demo_steps)
        figures += [
            Figure(f"demo model: training step, batch 1, {demo_resolution}², rank {RANK}, CPU time of "
                   f"{TRAIN_THREADS} thread", statistics.median(cpu), "s/step"),
            Figure("  the same, wall time (shared cores: see the load average)", statistics.median(wall), "s/step"),
            Figure("demo model: peak resident memory (engine + trainer)", peak_rss_gb(), "GB"),
        ]
        wall, cpu = time_training(str(settings.VAR_DIR / "models" / "demo"), demo_resolution, demo_steps, prior=True)
        figures += [
            Figure(f"demo model: likeness training step (prior preservation: instance + class picture), "
                   f"{demo_resolution}², rank {RANK}, CPU time of {TRAIN_THREADS} thread", statistics.median(cpu),
                   "s/step"),
        ]
        sd15 = build_sd15_folder(settings.VAR_DIR / "test-models" / "sd15-architecture",
                                 tokenizer_from=settings.VAR_DIR / "models" / "demo")
        sd_steps, sd_resolution = (2, 128) if short else (4, 256)
        wall, cpu = time_training(str(sd15), sd_resolution, sd_steps)
        figures += [
            Figure(f"SD1.5-architecture: training step, batch 1, {sd_resolution}², rank {RANK}, fp32, CPU time of "
                   f"{TRAIN_THREADS} thread", statistics.median(cpu), "s/step"),
            Figure("  the same, wall time (shared cores: see the load average)", statistics.median(wall), "s/step"),
            Figure("SD1.5-architecture: peak resident memory (engine + trainer's UNet copy + step)", peak_rss_gb(),
                   "GB"),
        ]
        sd15_flops = training_step_flops(SD15_UNET, 64, 768)
        sd15_ckpt = training_step_flops(SD15_UNET, 64, 768, checkpointing=True)
        sdxl_flops = training_step_flops(SDXL_UNET, 128, 2048, sdxl=True)
        sdxl_ckpt = training_step_flops(SDXL_UNET, 128, 2048, sdxl=True, checkpointing=True)
        figures += [
            Figure("SD1.5 training step, 512², batch 1 (forward + backward)", sd15_flops / 1e12, "TFLOP"),
            Figure("SD1.5 training step with gradient checkpointing", sd15_ckpt / 1e12, "TFLOP"),
            Figure("SDXL training step, 1024², batch 1 (forward + backward)", sdxl_flops / 1e12, "TFLOP"),
            Figure("SDXL training step with gradient checkpointing", sdxl_ckpt / 1e12, "TFLOP"),
        ]
        for gpu, tflops in GPUS.items():
            sustained = tflops * 1e12 * UTILISATION
            figures += [
                Figure(f"est. SD1.5 512² step on {gpu} at {UTILISATION:.0%}", sd15_ckpt / sustained, "s/step"),
                Figure(f"est. SDXL 1024² step on {gpu} at {UTILISATION:.0%}", sdxl_ckpt / sustained, "s/step"),
            ]
        figures += [Figure("machine's 1-min load average before the training bench (others' work)", load_before, ""),
                    Figure("machine's 1-min load average at its end", os.getloadavg()[0], "")]
    finally:
        torch.set_num_threads(threads)
    return figures

