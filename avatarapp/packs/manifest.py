"""Read and validate a style pack's manifest (``pack.toml``).

A pack is a folder: ``pack.toml``, one or more LoRA ``.safetensors`` files and a
preview image. This module only reads TOML and checks it, so the web process can
use it without importing torch.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "pack.toml"
BASE_FAMILIES = ("sd15", "sdxl")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")


class PackError(ValueError):
    """A pack that cannot be used, with a message that says what to fix."""


@dataclass
class LoraFile:
    file: str
    weight: float = 1.0


@dataclass
class PackManifest:
    folder: Path
    slug: str
    version: str
    base_family: str
    names: dict[str, str]
    descriptions: dict[str, str]
    prompt: str
    negative_prompt: str = ""
    loras: list[LoraFile] = field(default_factory=list)
    steps: int = 20
    guidance: float = 6.0
    strength: float = 0.6
    width: int = 512
    height: int = 512
    preview: str = ""
    scheduler: str = ""
    fast: dict | None = None  # few-step preview: scheduler, steps, guidance, optional speed LoRA

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "loras": [{"file": lora.file, "weight": lora.weight} for lora in self.loras],
            "steps": self.steps,
            "guidance": self.guidance,
            "strength": self.strength,
            "width": self.width,
            "height": self.height,
            "scheduler": self.scheduler,
            "preview": self.preview,
            "fast": self.fast,
        }


def _require(data: dict, key: str, kind, where: Path):
    if key not in data:
        raise PackError(f"{where}: '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind):
        raise PackError(f"{where}: '{key}' must be {kind.__name__ if isinstance(kind, type) else 'a number'}")
    return value


def load_manifest(folder: Path) -> PackManifest:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise PackError(f"{folder}: no {MANIFEST_NAME} in this folder")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PackError(f"{path}: not valid TOML ({e})") from None

    slug = _require(data, "slug", str, path)
    if not SLUG_RE.match(slug):
        raise PackError(f"{path}: slug '{slug}' must be lower-case letters, digits and dashes")
    base_family = _require(data, "base_family", str, path)
    if base_family not in BASE_FAMILIES:
        raise PackError(f"{path}: base_family must be one of {', '.join(BASE_FAMILIES)}")
    names = _require(data, "names", dict, path)
    if "en" not in names:
        raise PackError(f"{path}: names must include English ('en')")
    prompt = _require(data, "prompt", str, path)
    if "{subject}" not in prompt:
        raise PackError(f"{path}: prompt must contain the {{subject}} slot")

    loras = []
    for entry in data.get("lora", []):
        lora = LoraFile(file=_require(entry, "file", str, path), weight=float(entry.get("weight", 1.0)))
        if "/" in lora.file or "\\" in lora.file or not lora.file.endswith(".safetensors"):
            raise PackError(f"{path}: LoRA file '{lora.file}' must be a .safetensors file inside the pack folder")
        if not (folder / lora.file).is_file():
            raise PackError(f"{path}: LoRA file '{lora.file}' not found")
        loras.append(lora)

    defaults = data.get("defaults", {})
    manifest = PackManifest(
        folder=folder,
        slug=slug,
        version=str(_require(data, "version", str, path)),
        base_family=base_family,
        names={str(k): str(v) for k, v in names.items()},
        descriptions={str(k): str(v) for k, v in data.get("descriptions", {}).items()},
        prompt=prompt,
        negative_prompt=str(data.get("negative_prompt", "")),
        loras=loras,
        steps=int(defaults.get("steps", 20)),
        guidance=float(defaults.get("guidance", 6.0)),
        strength=float(defaults.get("strength", 0.6)),
        width=int(defaults.get("width", 512)),
        height=int(defaults.get("height", 512)),
        preview=str(data.get("preview", "")),
        scheduler=str(defaults.get("scheduler", "")),
        fast=load_fast_mode(data.get("fast"), folder, path),
    )
    check_defaults(manifest, path)
    return manifest


SCHEDULER_NAMES = ("", "ddim", "dpm", "euler", "euler_a", "lcm")


def load_fast_mode(fast, folder: Path, path: Path) -> dict | None:
    """The optional [fast] table: a few-step sampler (and speed LoRA) for quick previews."""
    if fast is None:
        return None
    if not isinstance(fast, dict):
        raise PackError(f"{path}: [fast] must be a table")
    mode = {
        "scheduler": str(fast.get("scheduler", "lcm")),
        "steps": int(fast.get("steps", 4)),
        "guidance": float(fast.get("guidance", 1.0)),
        "strength": float(fast["strength"]) if "strength" in fast else None,
        "lora": None,
    }
    if mode["scheduler"] not in SCHEDULER_NAMES:
        raise PackError(f"{path}: fast.scheduler must be one of {', '.join(n for n in SCHEDULER_NAMES if n)}")
    if not 1 <= mode["steps"] <= 12:
        raise PackError(f"{path}: fast.steps must be between 1 and 12")
    if "lora" in fast:
        name = str(fast["lora"])
        if "/" in name or not name.endswith(".safetensors") or not (folder / name).is_file():
            raise PackError(f"{path}: fast.lora '{name}' must be a .safetensors file in the pack folder")
        mode["lora"] = {"file": name, "weight": float(fast.get("lora_weight", 1.0))}
    return mode


def check_defaults(m: PackManifest, path: Path) -> None:
    if not 1 <= m.steps <= 150:
        raise PackError(f"{path}: defaults.steps must be between 1 and 150")
    if not 0.0 < m.strength <= 1.0:
        raise PackError(f"{path}: defaults.strength must be above 0 and at most 1")
    if m.scheduler not in SCHEDULER_NAMES:
        raise PackError(f"{path}: defaults.scheduler must be one of {', '.join(n for n in SCHEDULER_NAMES if n)}")
    if not 0.0 <= m.guidance <= 30.0:
        raise PackError(f"{path}: defaults.guidance must be between 0 and 30")
    for name, size in (("width", m.width), ("height", m.height)):
        if size % 8 or not 64 <= size <= 2048:
            raise PackError(f"{path}: defaults.{name} must be a multiple of 8 between 64 and 2048")
    if m.preview and ("/" in m.preview or not (m.folder / m.preview).is_file()):
        raise PackError(f"{path}: preview image '{m.preview}' not found in the pack folder")
