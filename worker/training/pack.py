"""A finished training run written out as a style pack, installed and registered at once.

The folder holds pack.toml and the LoRA as diffusers-format .safetensors; it is built beside
the run and put in place in one step (registry.put_pack_folder), registered (sync_packs), and
its preview is asked for (request_previews). Warm workers load a pack's LoRA at its first job,
and a new version replaces the old one there, so nothing needs restarting.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from avatarapp.packs.manifest import load_manifest
from avatarapp.packs.registry import put_pack_folder, request_previews, sync_packs
from avatarapp.training.models import TrainingRun
from worker.engine import Engine
from worker.training.core import save_lora

LORA_FILE = "lora.safetensors"
# What a trained pack recommends for generation, per family: the shipped packs' settings.
GENERATION_DEFAULTS: dict[str, dict[str, str | int | float]] = {
    "demo": {"steps": 8, "guidance": 5.0, "strength": 0.6, "width": 512, "height": 512},
    "sd15": {"steps": 25, "guidance": 7.5, "strength": 0.65, "width": 512, "height": 512, "scheduler": "dpm"},
}
NEGATIVE_PROMPT = ("blurry, low quality, deformed, distorted face, bad anatomy, extra fingers, watermark, text, "
                   "skin whitening, lightened skin")


def toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (the same escapes: \", \\, \n, \uXXXX).
    return json.dumps(text, ensure_ascii=False)


def manifest_text(run: TrainingRun, version: str) -> str:
    lines = [
        f"# Trained by Chhavi from {len(run.samples)} pictures (training run {run.id}).",
        f"slug = {toml_string(run.slug)}",
        f"version = {toml_string(version)}",
        f"base_family = {toml_string(run.base_family)}",
        # The captions' style: the pictures were captioned with it, so a prompt with it calls the style up.
        f"prompt = {toml_string('{subject}, ' + run.caption)}",
        f"negative_prompt = {toml_string(NEGATIVE_PROMPT)}",
        "",
        "[names]",
        f"en = {toml_string(run.name)}",
        "",
        "[descriptions]",
        f"en = {toml_string(run.description)}",
        "",
        "[[lora]]",
        f"file = {toml_string(LORA_FILE)}",
        "weight = 1.0",
        "",
        "[defaults]",
    ]
    for key, value in GENERATION_DEFAULTS[run.base_family].items():
        lines.append(f"{key} = {toml_string(value) if isinstance(value, str) else value}")
    return "\n".join(lines) + "\n"


def pack_version(run: TrainingRun) -> str:
    """Unique per run, so a pack trained again under the same slug is loaded anew by every warm worker."""
    return f"trained-{run.id.hex[:12]}"


def write_and_install(engine: Engine, run: TrainingRun, lora: dict[str, Any]) -> str:
    """Write the pack, check it as any pack is checked, install and register it; returns its version."""
    version = pack_version(run)
    staging = run.folder / "pack"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_lora(engine, lora, staging, LORA_FILE)
    (staging / "pack.toml").write_text(manifest_text(run, version), encoding="utf-8")
    load_manifest(staging)  # a PackError here names what is wrong, before anything is installed
    put_pack_folder(staging, Path(settings.AVATAR_PACKS_DIR) / run.slug, move=True)
    sync_packs()
    request_previews()
    return version
