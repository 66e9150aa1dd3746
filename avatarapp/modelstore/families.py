"""Which family (``demo``, ``sd15``, ``sdxl``) a model folder or single-file checkpoint belongs to.

Plain Python, no torch: a ``.safetensors`` header is read by hand (8-byte little-endian length,
then that many bytes of JSON naming every tensor with its dtype, shape and byte offsets), so the
web process and the management commands can tell an SDXL checkpoint from an SD 1.5 one, and
refuse SD 2.x, SD3, Flux or a LoRA, without loading a single weight.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from avatarapp.modelstore.errors import ModelStoreError

# The worker's marker file in a model folder (worker/engine.py FAMILY_MARKER; the demo model has one).
FAMILY_MARKER = "chhavi_family.json"
# Families the worker can run. "demo" is the built-in demo model's own.
WORKER_FAMILIES = ("demo", "sd15", "sdxl")
# Families real weights can have (the catalogue, checkpoints, diffusers folders).
MODEL_FAMILIES = ("sd15", "sdxl")

# A header larger than this is not a real one (SDXL's is about 200 KB): refuse before reading it.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# (key prefix or part, family or None, what it is) in the order they are tried. The first two are
# the text encoders that tell the families apart in an original (LDM-layout) checkpoint.
_CHECKPOINT_SIGNS: tuple[tuple[str, str | None, str], ...] = (
    ("conditioner.embedders.1", "sdxl", "SDXL"),
    ("cond_stage_model.transformer", "sd15", "Stable Diffusion 1.x"),
    ("cond_stage_model.model.", None, "Stable Diffusion 2.x (OpenCLIP text encoder, cond_stage_model.model.*)"),
    ("text_encoders.", None, "Stable Diffusion 3 (text_encoders.*)"),
    ("joint_blocks", None, "Stable Diffusion 3 (MMDiT joint_blocks)"),
    ("double_blocks.", None, "Flux (double_blocks.*)"),
)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file by name (``__metadata__`` left out), checked against the
    file's size so a truncated or foreign file is refused with a message naming it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelStoreError(f"{path} is not a .safetensors file (only {size} bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise ModelStoreError(
                    f"{path} is not a .safetensors file, or is truncated: its header claims {length} bytes "
                    f"but the file has {size}")
            raw = f.read(length)
    except OSError as e:
        raise ModelStoreError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelStoreError(f"{path} is not a .safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise ModelStoreError(f"{path} is not a .safetensors file: its header is not a JSON object")
    data_size = size - 8 - length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise ModelStoreError(f"{path} is not a valid .safetensors file: tensor {name!r} has no valid data_offsets")
        if offsets[1] > data_size:
            raise ModelStoreError(
                f"{path} is truncated: tensor {name!r} ends at byte {offsets[1]} of the data, which has only "
                f"{data_size} bytes; fetch or copy the file again")
        tensors[name] = info
    return tensors


def family_from_keys(keys: Iterable[str], where: str) -> str:
    """sd15 or sdxl from an original-layout checkpoint's tensor names; anything else is refused."""
    names = list(keys)
    for sign, family, what in _CHECKPOINT_SIGNS:
        # At the top of the file, or under a prefix (model.diffusion_model.joint_blocks.0...).
        if any(name.startswith(sign) or f".{sign}" in name for name in names):
            if family is None:
                raise ModelStoreError(f"{where} is a {what} checkpoint, which Chhavi does not support; "
                                      f"use a Stable Diffusion 1.5 or SDXL model")
            return family
    if any(name.startswith("lora_") or ".lora_A." in name or ".lora_down." in name or ".lora.down." in name
           for name in names):
        raise ModelStoreError(f"{where} is a LoRA, not a base model; LoRA files belong in a style pack "
                              f"(python manage.py install_pack)")
    sample = ", ".join(sorted(names)[:5]) or "no tensors"
    raise ModelStoreError(
        f"{where} is not a checkpoint Chhavi supports: it has neither SD 1.5 text-encoder keys "
        f"(cond_stage_model.transformer.*) nor SDXL ones (conditioner.embedders.1.*); found {len(names)} "
        f"tensors, for example {sample}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelStoreError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelStoreError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelStoreError(f"{path} must hold a JSON object")
    return data


def _folder_family(folder: Path) -> str:
    """sd15 or sdxl from a diffusers folder's model_index.json, checked against its UNet config."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelStoreError(f"{folder} is not a diffusers model folder: it has no model_index.json")
    class_name = str(_read_json(index).get("_class_name", ""))
    if class_name.startswith("StableDiffusionXL"):
        family = "sdxl"
    elif class_name.startswith("StableDiffusion") and not class_name.startswith("StableDiffusion3"):
        family = "sd15"
    else:
        raise ModelStoreError(f"{index} names the pipeline {class_name or '(none)'!r}; Chhavi supports Stable "
                              f"Diffusion 1.5 (StableDiffusion*Pipeline) and SDXL (StableDiffusionXL*Pipeline)")
    unet_config = folder / "unet" / "config.json"
    if unet_config.is_file():
        unet = _read_json(unet_config)
        cross, channels = unet.get("cross_attention_dim"), unet.get("in_channels", 4)
        if family == "sd15" and cross == 1024:
            raise ModelStoreError(f"{folder} is a Stable Diffusion 2.x model (its UNet's cross_attention_dim is "
                                  f"1024), which Chhavi does not support; use an SD 1.5 or SDXL model")
        if family == "sdxl" and cross == 1280:
            raise ModelStoreError(f"{folder} is the SDXL refiner, not a base model; use an SDXL base model")
        if channels != 4:
            raise ModelStoreError(f"{folder} has a UNet with {channels} input channels (an inpainting or depth "
                                  f"model); Chhavi needs a plain text-to-image model (4 channels)")
    return family


def detect_family(path: Path) -> str:
    """demo, sd15 or sdxl for a model folder or a single .safetensors checkpoint.

    A folder's ``chhavi_family.json`` wins; otherwise its ``model_index.json`` pipeline class
    decides. A checkpoint is judged by the tensor names in its header. Anything unsupported
    raises ModelStoreError with a message saying what was found.
    """
    if path.is_dir():
        marker = path / FAMILY_MARKER
        if marker.is_file():
            family = _read_json(marker).get("family")
            if family not in WORKER_FAMILIES:
                raise ModelStoreError(f"{marker} names the family {family!r}; use one of {', '.join(WORKER_FAMILIES)}")
            return str(family)
        return _folder_family(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ModelStoreError(f"{path} is not a .safetensors checkpoint; Chhavi loads only .safetensors "
                                  f"(pickle .ckpt/.bin files can run code when loaded: convert them first)")
        return family_from_keys(read_safetensors_header(path), str(path))
    raise ModelStoreError(f"{path} does not exist")
