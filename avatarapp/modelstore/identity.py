"""Where the identity adapter (IP-Adapter, setting AVATAR_IDENTITY_ADAPTER) lives, and its folder layout.

Plain Python with no torch: the web process uses it to refuse packs that ask for an identity
adapter a worker could not have, and the worker (worker/engine.py) to find the files it loads.

The folder::

    <folder>/ip_adapter.safetensors           the adapter (image_proj.* and ip_adapter.* tensors;
                                              safetensors only: a pickled .bin could run code)
    <folder>/image_encoder/config.json        its CLIP image encoder, a transformers
    <folder>/image_encoder/model.safetensors  CLIPVisionModelWithProjection folder
    <folder>/image_encoder/preprocessor_config.json   optional: the encoder's CLIPImageProcessor

`fetch_model ip-adapter-plus-face-sd15` (or -sdxl) lays a catalogue adapter out this way under
AVATAR_MODELS_DIR, so the setting may also be that bare name.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from avatarapp.modelstore.errors import ModelStoreError

WEIGHTS_NAME = "ip_adapter.safetensors"
ENCODER_DIR = "image_encoder"
ENCODER_FILES = ("config.json", "model.safetensors")
SETTING = "AVATAR_IDENTITY_ADAPTER"
KIND = "ip_adapter"  # the catalogue's and the install record's kind for these folders

# The image encoder of h94/IP-Adapter's SD 1.5 models and its SDXL "vit-h" ones is OpenCLIP ViT-H-14's
# vision tower. Its config.json is a small git file of the hub repository whose bytes no reachable
# source pins, so Chhavi writes its own beside the verified weights: the same architecture (width
# 1280, 32 layers, 16 heads, patch 14, 224 px, projection 1024: 632,076,800 parameters, exactly the
# published model.safetensors' 2,528,373,448 bytes in fp32 with its header). A wrong figure here
# could not load a wrong model: transformers refuses weights whose shapes differ.
VIT_H_CONFIG = Path(__file__).resolve().parent / "pipeline_configs" / "clip_vit_h_14" / "config.json"
VIT_H_CONFIG_SHA256 = "60789206afe46616c3cb1d9b6852888d16226b88798aa803298893903e1dc875"


def resolve_identity_adapter(value: str, models_dir: Path) -> Path:
    """The folder the setting names: a path, or the bare name of a model installed under `models_dir`."""
    path = Path(value)
    installed = models_dir / value
    if not path.exists() and value and "/" not in value and installed.exists():
        return installed
    return path


def identity_adapter_problem(value: str, models_dir: Path) -> str:
    """Why the setting does not name a usable adapter folder ("" when it does); files are not opened."""
    if not value:
        return f"{SETTING} is not set"
    folder = resolve_identity_adapter(value, models_dir)
    if not folder.is_dir():
        return (f"{SETTING}={value} is neither a folder nor a model installed in {models_dir} "
                f"(see `python manage.py fetch_model --list`)")
    if (folder / "ip_adapter.bin").exists() and not (folder / WEIGHTS_NAME).exists():
        return (f"{SETTING}: {folder} holds ip_adapter.bin; only {WEIGHTS_NAME} is accepted (a pickled .bin can "
                f"run code when loaded): convert it, or fetch the .safetensors release")
    wanted = [WEIGHTS_NAME] + [f"{ENCODER_DIR}/{name}" for name in ENCODER_FILES]
    missing = [name for name in wanted if not (folder / name).is_file()]
    if missing:
        return (f"{SETTING}: {folder} is incomplete, {', '.join(missing)} missing (the folder holds "
                f"{WEIGHTS_NAME} and the CLIP image encoder in {ENCODER_DIR}/)")
    return ""


def add_encoder_config(folder: Path, kind: str | None) -> list[Path]:
    """An installed identity adapter whose image_encoder/ came without its config.json gets Chhavi's
    ViT-H-14 one (checked against its SHA-256); other folders, and one that has a config, are left alone."""
    target = folder / ENCODER_DIR / "config.json"
    if kind != KIND or target.exists() or not (folder / ENCODER_DIR / "model.safetensors").is_file():
        return []
    data = VIT_H_CONFIG.read_bytes()
    if hashlib.sha256(data).hexdigest() != VIT_H_CONFIG_SHA256:
        raise ModelStoreError(f"{VIT_H_CONFIG} is not the file Chhavi shipped (its SHA-256 differs); reinstall Chhavi")
    shutil.copyfile(VIT_H_CONFIG, target)
    return [target]
