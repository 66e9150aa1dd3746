"""Diffusion-engine benchmarks: pack switching, micro-batching, demo latency, FLOPs.

Everything is built here, with seeded random weights and no download:

* an SD1.5-size UNet (the real SD1.5 config, 860 M parameters) inside a
  StableDiffusionImg2ImgPipeline whose other parts are small (the demo's
  tokenizer, scheduler and VAE, a one-layer 768-wide CLIP text encoder), and
  three rank-32 LoRA files for it in diffusers' peft format. On it: how long
  ``Engine.switch_pack`` takes, against diffusers' plain unload + load; how
  much memory 200 switches leave behind; what one denoising step costs with a
  pack active against the base model, unfused ("active", the CPU default) and
  merged ("fused", the GPU default);
* the demo model (``AVATAR_BASE_MODEL``, var/models/demo) with the demo
  "avatar" pack: one 512x512 picture end to end, and a batch of 4 against 4
  single runs (throughput and pixels), on the CPU and, when there is one, on a
  GPU: the budgets differ (a CPU has no idle width for a batch to fill);
* FLOPs of one UNet step (SD1.5 at 512², SDXL at 1024²), counted on the
  "meta" device, and what that means on an H100.

Ratios are measured side by side in one run, interleaved (base and pack steps
alternate in ABBA order) so that drift in the machine's speed cancels out.
Wall-clock figures assume the 2 cores are the bench's own: when other processes
run, a step with 2 torch threads waits at every kernel for whichever thread was
preempted, and its time says more about the neighbours than about the LoRA. So
the step ratios are also measured as the CPU time of one thread (median of the
per-pair ratios), which other processes barely move, and the machine's load
average before and after is part of the table.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from bench.figures import Figure
from bench.model_folders import SD15_UNET

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "tests" / "fixtures" / "portrait.jpg"

THREADS = 2  # the budgets are for 2 CPU cores
SEED = 20261121
LORA_RANK = 32
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
PACKS = ("bench-a", "bench-b", "bench-c")

SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=2048, attention_head_dim=(5, 10, 20), use_linear_projection=True,
    addition_embed_type="text_time", projection_class_embeddings_input_dim=2816, addition_time_embed_dim=256,
)

H100_TFLOPS = 989.0  # dense BF16
H100_UTILISATION = 0.40
ESTIMATE_STEPS = 30

SWITCH_BUDGET_MS = 10.0
SPEEDUP_BUDGET = 20.0
RSS_BUDGET_MB = 50.0
STEP_RATIO_BUDGET = 1.05
# Micro-batching, batch of 4 vs one by one, per device (DESIGN.md): a GPU has idle width to fill.
BATCH_BUDGET = {"cpu": 0.95, "cuda": 1.5}
BATCH_SEEDS = [101, 102, 103, 104]
DEMO_BUDGET_S = 2.0
PIXEL_TOLERANCE = 2  # "same pixels": what tests/test_engine_packs.py allows between batched and alone, of 255


# --- Measuring ------------------------------------------------------------------

class Stages:
    """Progress bars for the long parts, and each figure printed as soon as it is measured."""

    def __init__(self, progress):
        self.progress = progress
        self.figures: list[Figure] = []

    @contextlib.contextmanager
    def stage(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        task = self.progress.add_task(description, total=total)
        yield lambda: self.progress.advance(task)
        self.progress.update(task, completed=total)

    def add(self, name: str, value: float, unit: str, budget: str = "", ok: bool | None = None) -> float:
        figure = Figure(name, float(value), unit, budget, ok)
        self.figures.append(figure)
        mark = "" if ok is None else ("  [green]ok" if ok else "  [red]MISSED")
        budget_note = f"  (budget {budget})" if budget else ""
        self.progress.console.print(f"  {name}: [bold]{value:.4g} {unit}[/]{budget_note}{mark}")
        return figure.value

    def not_measured(self, name: str, budget: str, reason: str) -> None:
        figure = Figure.not_measured(name, budget, reason)
        self.figures.append(figure)
        self.progress.console.print(f"  {name}: [yellow]{figure.note}[/]  (budget {budget})")


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_seconds(fn: Callable[[], object]) -> float:
    """CPU time of `fn` with torch on one thread: its cost, whatever else the machine is doing."""
    torch.set_num_threads(1)  # every kernel then runs on the calling thread
    try:
        start = time.thread_time()
        fn()
        return time.thread_time() - start
    finally:
        torch.set_num_threads(THREADS)


def median(values: list[float]) -> float:
    return statistics.median(values)


def pair_ratio(base: list[float], pack: list[float]) -> float:
    """Median over interleaved pairs of pack / base: each pair ran under the same machine conditions."""
    return median([p / b for b, p in zip(base, pack, strict=True)])


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    logging.getLogger("worker.engine").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


# --- 4. FLOPs of one UNet step ----------------------------------------------------

def unet_step_flops(config: dict, latent: int, context_dim: int, *, sdxl: bool = False,
                    lora_rank: int | None = None) -> float:
    """FLOPs of one UNet forward with CFG (batch 2), built and run on the meta device (no memory, no time)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        if lora_rank:
            from peft import LoraConfig

            unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=list(LORA_TARGETS),
                                        init_lora_weights=False))
        sample = torch.empty(2, 4, latent, latent)
        context = torch.empty(2, 77, context_dim)
        timestep = torch.tensor([500, 500])
        extra = {}
        if sdxl:
            extra["added_cond_kwargs"] = {"text_embeds": torch.empty(2, 1280), "time_ids": torch.empty(2, 6)}
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        unet(sample, timestep, context, **extra)
    return float(counter.get_total_flops())


def flops(stages: Stages) -> None:
    with stages.stage("FLOPs per UNet step (meta device)", total=3) as advance:
        sd15 = unet_step_flops(SD15_UNET, 64, 768)
        advance()
        sd15_lora = unet_step_flops(SD15_UNET, 64, 768, lora_rank=LORA_RANK)
        advance()
        sdxl = unet_step_flops(SDXL_UNET, 128, 2048, sdxl=True)
        advance()
    sustained = H100_TFLOPS * 1e12 * H100_UTILISATION
    stages.add("SD1.5 UNet step, 512² (64² latents, CFG batch 2)", sd15 / 1e12, "TFLOP")
    stages.add("SDXL UNet step, 1024² (128² latents, CFG batch 2)", sdxl / 1e12, "TFLOP")
    stages.add(f"unfused rank-{LORA_RANK} LoRA extra FLOPs, SD1.5 step", 100 * (sd15_lora / sd15 - 1), "%")
    stages.add(f"H100 est., SD1.5 512², {ESTIMATE_STEPS} steps (UNet only, {H100_UTILISATION:.0%} of "
               f"{H100_TFLOPS:.0f} TFLOPS)", ESTIMATE_STEPS * sd15 / sustained, "s/image")
    stages.add(f"H100 est., SDXL 1024², {ESTIMATE_STEPS} steps (UNet only, {H100_UTILISATION:.0%} of "
               f"{H100_TFLOPS:.0f} TFLOPS)", ESTIMATE_STEPS * sdxl / sustained, "s/image")


# --- 1. Pack switching on an SD1.5-size UNet -------------------------------------

def build_sd15_pipeline(demo: Path):
    """An img2img pipeline around a seeded random SD1.5-size UNet; the other parts are small."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    tokenizer = CLIPTokenizer.from_pretrained(demo, subfolder="tokenizer", local_files_only=True)
    text_config = CLIPTextConfig.from_pretrained(demo, subfolder="text_encoder", local_files_only=True)
    text_config.update(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=1, num_attention_heads=12,
                            projection_dim=768))
    text_encoder = CLIPTextModel(text_config).eval()
    vae = AutoencoderKL.from_pretrained(demo, subfolder="vae", local_files_only=True).eval()
    scheduler = DDIMScheduler.from_pretrained(demo, subfolder="scheduler", local_files_only=True)
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_loras(unet, folder: Path) -> list[str]:
    """One rank-32 LoRA file per bench pack (to_q, to_k, to_v, to_out.0; non-zero lora_B), diffusers' format."""
    from diffusers import StableDiffusionPipeline

    targets = [(name, module) for name, module in unet.named_modules()
               if isinstance(module, torch.nn.Linear) and any(name.endswith("." + t) for t in LORA_TARGETS)]
    files = []
    for index, slug in enumerate(PACKS):
        generator = torch.Generator().manual_seed(SEED + 100 + index)
        state = {}
        for name, linear in targets:
            state[f"{name}.lora_A.weight"] = torch.randn(LORA_RANK, linear.in_features, generator=generator) \
                / linear.in_features ** 0.5
            state[f"{name}.lora_B.weight"] = torch.randn(linear.out_features, LORA_RANK, generator=generator) \
                * (0.02 / LORA_RANK ** 0.5)
        file = f"{slug}.safetensors"
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=state, weight_name=file,
                                                  safe_serialization=True)
        files.append(file)
    return files


def load_packs(engine, folder: Path, files: list[str]) -> list[float]:
    from avatarapp.packs.manifest import LoraFile

    times = []
    for slug, file in zip(PACKS, files, strict=True):
        times.append(seconds(lambda slug=slug, file=file: engine.load_pack(slug, "bench", folder, [LoraFile(file)])))
    return times


def switch_times(engine, count: int, advance: Callable[[], None]) -> list[float]:
    """`count` switches alternating between two resident packs, each timed on its own."""
    engine.switch_pack(PACKS[1])
    times = []
    for n in range(count):
        target = PACKS[n % 2]
        start = time.perf_counter()
        engine.switch_pack(target)
        times.append(time.perf_counter() - start)
        advance()
    return times


def step_times(engine, latent: int, context: torch.Tensor, pairs: int, advance: Callable[[], None],
               cpu_time: bool = False, warm_up: bool = True) -> tuple[list[float], list[float]]:
    """One UNet forward (CFG batch 2) with no pack and with a pack active, interleaved ABBA.

    Wall-clock time with THREADS torch threads; or, with `cpu_time`, the CPU time of one
    thread doing all the work, which other processes on the machine cannot inflate.
    """
    unet = engine.pipe.unet
    sample = torch.randn(2, 4, latent, latent, generator=torch.Generator().manual_seed(SEED))
    timestep = torch.tensor(500)

    outputs = {}

    def step(pack: str | None) -> float:
        engine.switch_pack(pack)

        def forward():
            outputs[pack] = unet(sample, timestep, encoder_hidden_states=context).sample

        with torch.inference_mode():
            return (cpu_seconds if cpu_time else seconds)(forward)

    times = interleave(step, pairs, advance, warm_up)
    # Guard against timing a no-op: the pack must change what the UNet computes.
    if not (outputs[None] - outputs[PACKS[0]]).abs().max() > 1e-4:
        raise RuntimeError(f"pack {PACKS[0]} does not change the UNet's output: the LoRA is not applied")
    return times


def interleave(step: Callable[[str | None], float], pairs: int, advance: Callable[[], None],
               warm_up: bool) -> tuple[list[float], list[float]]:
    """`pairs` base and pack steps, in ABBA order so that a machine slowing down or speeding up cancels out."""
    if warm_up:
        step(None), step(PACKS[0])  # first-call allocations for this size, in both modes
    advance()
    base, pack = [], []
    for n in range(pairs):
        order = (None, PACKS[0]) if n % 2 == 0 else (PACKS[0], None)
        for which in order:
            (base if which is None else pack).append(step(which))
        advance()
    return base, pack


def pack_switching(stages: Stages, short: bool) -> None:
    from django.conf import settings

    from worker.engine import Engine

    latent = 32 if short else 64
    pairs = 3 if short else 6
    cpu_latent, cpu_pairs = 32, 5 if short else 7
    switches = 100
    baseline_runs = 5 if short else 9
    fused_switches = 10 if short else 50
    demo = Path(settings.AVATAR_BASE_MODEL)

    with contextlib.ExitStack() as cleanup:
        folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chhavi-bench-lora-")))
        with stages.stage("SD1.5-size UNet + 3 rank-32 LoRAs", total=2) as advance:
            pipe = build_sd15_pipeline(demo)
            advance()
            files = write_loras(pipe.unet, folder)
            advance()
        with torch.inference_mode():
            prompt_embeds, negative_embeds = pipe.encode_prompt(
                "portrait of a person, 3d cartoon avatar", "cpu", 1, True, negative_prompt="blurry")
        context = torch.cat([negative_embeds, prompt_embeds])

        # Unfused ("active") packs: the CPU default.
        engine = Engine("bench: SD1.5-size random UNet", device="cpu", dtype="fp32", lora_mode="active")
        engine.attach(pipe)
        with stages.stage("active: load 3 packs, switch, RSS", total=3 + switches + 220) as advance:
            load = load_packs(engine, folder, files)
            for _ in load:
                advance()
            active = switch_times(engine, switches, advance)
            cycle = [*PACKS, None]
            for n in range(20):  # warm-up
                engine.switch_pack(cycle[n % 4])
                advance()
            gc.collect()
            before = rss_bytes()
            for n in range(200):
                engine.switch_pack(cycle[n % 4])
                advance()
            gc.collect()
            growth = (rss_bytes() - before) / 2**20
        with stages.stage(f"active: {latent * 8}² steps, base/pack", total=pairs + 1) as advance:
            active_base, active_pack = step_times(engine, latent, context, pairs, advance)

        with stages.stage(f"active: {cpu_latent * 8}² steps, CPU time, 1 thread", total=cpu_pairs + 1) as advance:
            cpu_base, cpu_pack = step_times(engine, cpu_latent, context, cpu_pairs, advance, cpu_time=True,
                                            warm_up=cpu_latent != latent)

        # diffusers' plain way: drop every LoRA, load the next pack's file.
        with stages.stage("baseline: diffusers unload + load", total=baseline_runs + 1) as advance:
            pipe.unload_lora_weights()
            engine = None
            pipe.load_lora_weights(str(folder), weight_name=files[0])  # warm-up
            advance()
            baseline = []
            for n in range(baseline_runs):
                file = files[(n + 1) % 2]
                baseline.append(seconds(lambda file=file: (pipe.unload_lora_weights(),
                                                           pipe.load_lora_weights(str(folder), weight_name=file))))
                advance()
            pipe.unload_lora_weights()

        # Fused packs: the active one is merged into the base weights (the GPU default).
        probe = [m.weight for name, m in pipe.unet.named_modules()
                 if isinstance(m, torch.nn.Linear) and name.endswith(".to_q")][:8]
        originals = [w.detach().clone() for w in probe]
        fused = Engine("bench: SD1.5-size random UNet", device="cpu", dtype="fp32", lora_mode="fused")
        fused.attach(pipe)
        with stages.stage("fused: load 3 packs, switch", total=3 + fused_switches) as advance:
            load_packs(fused, folder, files)
            for _ in PACKS:
                advance()
            fused_switch = switch_times(fused, fused_switches, advance)
        fused_base = fused_pack = None
        if not short:  # the CPU-time figure below says the same, and other processes cannot blur it
            with stages.stage(f"fused: {latent * 8}² steps, base/pack", total=pairs + 1) as advance:
                fused_base, fused_pack = step_times(fused, latent, context, pairs, advance)
        with stages.stage(f"fused: {cpu_latent * 8}² steps, CPU time, 1 thread", total=cpu_pairs + 1) as advance:
            fused_cpu_base, fused_cpu_pack = step_times(fused, cpu_latent, context, cpu_pairs, advance,
                                                        cpu_time=True, warm_up=cpu_latent != latent)
        fused.switch_pack(None)
        probe = [m.base_layer.weight for name, m in pipe.unet.named_modules() if name.endswith(".to_q")][:8]
        drift = max(float((w - o).abs().max()) for w, o in zip(probe, originals, strict=True))
        pipe = fused = probe = originals = None  # free the 860 M-parameter UNet before the demo model
        gc.collect()

    ms = 1000 * median(active)
    stages.add("pack switch, SD1.5-size UNet, rank-32 LoRA (median)", ms, "ms", f"<= {SWITCH_BUDGET_MS:g} ms",
               ms <= SWITCH_BUDGET_MS)
    stages.add("pack switch, slowest of the run", 1000 * max(active), "ms")
    base_ms = 1000 * median(baseline)
    stages.add("diffusers unload_lora_weights + load_lora_weights (median)", base_ms, "ms")
    speedup = base_ms / ms
    stages.add("pack switch speed-up over diffusers unload + load", speedup, "x", f">= {SPEEDUP_BUDGET:g}x",
               speedup >= SPEEDUP_BUDGET)
    stages.add("RSS growth over 200 switches", growth, "MB", f"<= {RSS_BUDGET_MB:g} MB", growth <= RSS_BUDGET_MB)
    stages.add("load_pack, one-time per pack (median of 3)", 1000 * median(load), "ms")
    size = f"{latent * 8}²"
    stages.add(f"UNet step, base model, {size} CFG batch 2, {THREADS} threads", median(active_base), "s")
    ratio = median(active_pack) / median(active_base)
    stages.add(f"step with a pack active / base step, unfused, {size}", ratio, "x",
               f"<= {STEP_RATIO_BUDGET:g}x", ratio <= STEP_RATIO_BUDGET)
    ratio = pair_ratio(cpu_base, cpu_pack)
    stages.add(f"step with a pack active / base step, unfused, {cpu_latent * 8}², CPU time of 1 thread, "
               "median of pairs", ratio, "x", f"<= {STEP_RATIO_BUDGET:g}x", ratio <= STEP_RATIO_BUDGET)
    if fused_base:
        stages.add(f"step with a pack active / base step, fused, {size}",
                   median(fused_pack) / median(fused_base), "x")
    stages.add(f"step with a pack active / base step, fused, {cpu_latent * 8}², CPU time of 1 thread, "
               "median of pairs (identical work: shows the noise)", pair_ratio(fused_cpu_base, fused_cpu_pack), "x")
    stages.add("pack switch, fused mode (unmerge + merge, median)", 1000 * median(fused_switch), "ms")
    stages.add("fused: base weights' max drift after the merges/unmerges above", drift, "abs")


# --- 2 and 3. The demo model ------------------------------------------------------

def demo_pack():
    """The demo "avatar" pack's manifest, read as the registry reads it."""
    from django.conf import settings

    from avatarapp.packs.manifest import load_manifest

    return load_manifest(Path(settings.AVATAR_PACKS_DIR) / "avatar")


def demo_engine(device: str, pack):
    """The demo model on `device`, warm, with the demo "avatar" pack active, as a worker holds it."""
    from django.conf import settings

    from worker.engine import Engine

    # The CPU's own defaults (fp32, unfused packs) spelled out; on a GPU the worker's "auto" choice.
    if device == "cpu":
        engine = Engine(settings.AVATAR_BASE_MODEL, device="cpu", dtype="fp32", lora_mode="active")
    else:
        engine = Engine(settings.AVATAR_BASE_MODEL, device=device)
    engine.load()
    engine.load_pack(pack.slug, pack.version, pack.folder, pack.spec.loras)
    engine.switch_pack(pack.slug)
    return engine


def demo_requests(pack) -> Callable[..., object]:
    """`request(seeds, **changes)`: the pack's defaults on the portrait fixture, one picture per seed."""
    from PIL import Image

    from worker.engine import GenerationRequest

    spec = pack.spec
    photo = Image.open(PORTRAIT).convert("RGB")

    def request(seeds: list[int], **changes) -> GenerationRequest:
        fields = dict(
            images=[photo] * len(seeds), prompt=spec.prompt.replace("{subject}", "portrait of a person"),
            negative_prompt=spec.negative_prompt, seeds=seeds, steps=spec.steps, guidance=spec.guidance,
            strength=spec.strength, width=spec.width, height=spec.height, scheduler=spec.scheduler,
        )
        fields.update(changes)
        return GenerationRequest(**fields)

    return request


def batch_vs_alone(engine, request: Callable[..., object], rounds: int,
                   advance: Callable[[], None]) -> tuple[list[float], list[float], int]:
    """A batch of 4 and the same 4 seeds one by one, interleaved: their times and the largest pixel difference."""
    import numpy as np

    seeds = BATCH_SEEDS
    engine.generate(request(seeds))  # warm-up for the batch shapes
    advance()
    batched_times, alone_times = [], []
    batched = alone = None
    for n in range(rounds):
        def run_batch():
            nonlocal batched
            batched = engine.generate(request(seeds))

        def run_alone():
            nonlocal alone
            alone = [engine.generate(request([seed]))[0] for seed in seeds]

        for which in ((run_batch, run_alone) if n % 2 == 0 else (run_alone, run_batch)):
            (batched_times if which is run_batch else alone_times).append(seconds(which))
        advance()
    diff = max(int(np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max())
               for a, b in zip(batched, alone, strict=True))
    return batched_times, alone_times, diff


def add_batching(stages: Stages, device: str, size: str, batched: list[float], alone: list[float], diff: int) -> None:
    where = "CPU" if device == "cpu" else "GPU"
    budget = BATCH_BUDGET[device]
    speedup = median(alone) / median(batched)
    stages.add(f"micro-batching on {where}: batch of 4 vs 4 alone, throughput ({size})", speedup, "x",
               f">= {budget:g}x" + (" (no loss)" if device == "cpu" else ""), speedup >= budget)
    stages.add(f"micro-batching on {where}: batched vs alone max pixel diff, same seeds", diff, "of 255",
               f"<= {PIXEL_TOLERANCE} (same pixels)", diff <= PIXEL_TOLERANCE)


def demo_model(stages: Stages, short: bool) -> None:
    pack = demo_pack()
    spec = pack.spec
    request = demo_requests(pack)
    rounds = 2 if short else 3
    cpu_rounds = 1 if short else 2

    with stages.stage("demo: one picture end to end", total=8) as advance:
        engine = demo_engine("cpu", pack)
        engine.generate(request([1]))  # warm-up
        advance()
        single = []
        for seed in (2, 3, 4):
            single.append(seconds(lambda seed=seed: engine.generate(request([seed]))))
            advance()
        free = request([5], prompt="", negative_prompt="", strength=1.0, steps=8)
        engine.generate(free)
        free_times = [seconds(lambda: engine.generate(free))]
        advance()
        free_times.append(seconds(lambda: engine.generate(free)))
        advance()
        single_cpu = []
        for seed in (6, 7):
            single_cpu.append(cpu_seconds(lambda seed=seed: engine.generate(request([seed]))))
            advance()

    seeds = BATCH_SEEDS
    with stages.stage("demo on CPU: batch of 4 vs 4 alone", total=1 + rounds) as advance:
        batched_times, alone_times, diff = batch_vs_alone(engine, request, rounds, advance)
    with stages.stage("demo on CPU: batch of 4 vs 4 alone, CPU time", total=cpu_rounds) as advance:
        batched_cpu, alone_cpu = [], []
        for _ in range(cpu_rounds):
            batched_cpu.append(cpu_seconds(lambda: engine.generate(request(seeds))))
            alone_cpu.append(cpu_seconds(lambda: [engine.generate(request([seed])) for seed in seeds]))
            advance()
    engine = None
    gc.collect()

    size = f"{spec.width}x{spec.height}"
    steps = f"{spec.steps} steps x strength {spec.strength}"
    t = median(single)
    stages.add(f"demo model, one {size} image end to end ({steps}, median of 3)", t, "s",
               f"< {DEMO_BUDGET_S:g} s", t < DEMO_BUDGET_S)
    stages.add("the same, CPU time of 1 thread (2 idle cores should not take longer)", median(single_cpu), "s")
    stages.add(f"demo model, {size}, strength 1.0, 8 steps, empty prompt", median(free_times), "s")
    add_batching(stages, "cpu", size, batched_times, alone_times, diff)
    stages.add("micro-batching on CPU, the same in CPU time of 1 thread (work saved, not parallelism)",
               median(alone_cpu) / median(batched_cpu), "x")

    gpu_name = f"micro-batching on GPU: batch of 4 vs 4 alone, throughput ({size})"
    if not torch.cuda.is_available():
        stages.not_measured(gpu_name, f">= {BATCH_BUDGET['cuda']:g}x", "no GPU")
        return
    with stages.stage(f"demo on GPU ({torch.cuda.get_device_name()}): batch of 4 vs 4 alone",
                      total=2 + rounds) as advance:
        engine = demo_engine("cuda", pack)
        engine.generate(request([1]))  # warm-up: kernels picked, memory pooled
        advance()
        batched_times, alone_times, diff = batch_vs_alone(engine, request, rounds, advance)
    engine = None
    gc.collect()
    torch.cuda.empty_cache()
    add_batching(stages, "cuda", size, batched_times, alone_times, diff)


# --- 4. A model with SD1.5's real architecture, as a worker loads it ------------------

def real_architecture(stages: Stages, short: bool) -> None:
    """What an operator's SD1.5 model costs this machine: the worker's load and warm-up, and a step at 512².

    The folder (bench/model_folders.py) has SD1.5's exact dimensions and random weights, in the
    diffusers layout `fetch_model` installs; it is built once into var/ and reused.
    """
    from django.conf import settings
    from PIL import Image

    from bench.model_folders import build_sd15_folder
    from worker.engine import Engine, GenerationRequest

    steps = 3 if short else 6
    with stages.stage("SD1.5-architecture model: build (once), load, warm up, 512² steps", total=3 + steps) as advance:
        folder = build_sd15_folder(settings.VAR_DIR / "test-models" / "sd15-architecture",  # the tests' own
                                   tokenizer_from=settings.VAR_DIR / "models" / "demo")
        advance()
        engine = Engine(str(folder), device="cpu", dtype="fp32", lora_mode="active")
        load = seconds(engine.load)
        advance()
        warm = seconds(engine.warm_up)
        advance()
        marks = [time.perf_counter()]

        def on_step(done: int, total: int) -> bool:
            marks.append(time.perf_counter())
            advance()
            return True

        with Image.open(PORTRAIT) as portrait:
            request = GenerationRequest(images=[portrait.convert("RGB")], prompt="portrait of a person, cinematic",
                                        negative_prompt="blurry", seeds=[SEED], steps=steps, guidance=7.0,
                                        strength=1.0, width=512, height=512)
            engine.generate(request, on_step)
    step_seconds = [b - a for a, b in zip(marks[1:], marks[2:], strict=False)]  # the first step pays for set-up
    stages.add("SD1.5-architecture model: load from disk (worker start)", load, "s")
    stages.add("SD1.5-architecture model: warm-up run", warm, "s")
    stages.add(f"SD1.5 step at 512², guidance on, fp32, {THREADS} cores", median(step_seconds), "s/step")
    del engine
    gc.collect()


def busy_machine_warning(console) -> float:
    """Timings assume the cores are ours: say so when other processes are using them."""
    load = os.getloadavg()[0]
    if load > 0.5:
        console.print(f"[yellow]warning:[/] the 1-minute load average is {load:.1f} on {os.cpu_count()} cores before "
                      "the engine bench starts; other processes compete for the cores, so times are inflated "
                      f"(with {THREADS} torch threads, small operations wait for a preempted thread).")
    return load


# --- The suite ------------------------------------------------------------------

def run(short: bool) -> list[Figure]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    quiet_libraries()
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) \
                as progress:
            stages = Stages(progress)
            load_before = busy_machine_warning(progress.console)
            pack_switching(stages, short)
            demo_model(stages, short)
            real_architecture(stages, short)
            flops(stages)
            stages.add("machine's 1-min load average before the engine bench (others' work)", load_before, "")
            stages.add(f"machine's 1-min load average at the end (~{THREADS} is the bench itself)",
                       os.getloadavg()[0], "")
    finally:
        torch.set_num_threads(threads)
    return stages.figures
