"""Install a model from a local diffusers folder or a single ``.safetensors`` checkpoint.

The source is checked before anything is written (a supported family, every ``.safetensors``
header readable and not truncated, each weight-bearing component with ``.safetensors``
weights), copied into ``<models>/.staging/`` while its SHA-256 is computed, and moved into
``<models>/<name>/`` in one step with its record. A refusal leaves nothing behind.

Layout of what is installed::

    <models>/<name>/                       a diffusers folder, as it was (pickle weights left out)
        model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/ ...
        chhavi_model.json, chhavi_family.json
    <models>/<name>/<checkpoint>.safetensors   a single-file checkpoint, at the top of its folder
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from avatarapp.modelstore import store
from avatarapp.modelstore.catalogue import RESERVED_NAMES
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import detect_family, read_safetensors_header

# Weights in pickle formats run code when loaded; the worker reads .safetensors only, so they are left out.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle", ".msgpack", ".h5", ".onnx")
# Components whose weights a pipeline needs (a folder that has only pickle weights for one is refused).
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@dataclass
class ImportResult:
    target: Path
    record: dict[str, Any]
    installed: bool  # False: the very same files were already installed under that name
    skipped: list[str] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)


def default_name(path: Path) -> str:
    stem = path.stem if path.is_file() else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")[:64]
    return name or "model"


def _walk(folder: Path) -> tuple[list[Path], list[str]]:
    """The files to copy from a model folder (relative), and those left out (pickle weights)."""
    files, skipped = [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() in RESERVED_NAMES:
            continue  # .git, .cache, our own record files (written afresh)
        if path.is_dir():
            continue
        if not path.is_file():  # a broken link, a device, a socket
            raise ModelStoreError(f"{path} is not a regular file (a broken link?); fix or remove it")
        if path.suffix in PICKLE_SUFFIXES:
            skipped.append(rel.as_posix())
            continue
        files.append(rel)
    return files, skipped


def inspect_folder(folder: Path) -> tuple[str, list[Path], list[str]]:
    """Check a diffusers folder: (family, files to copy, files left out). ModelStoreError says why not."""
    if not (folder / "model_index.json").is_file():
        raise ModelStoreError(
            f"{folder} is not a model: it has no model_index.json (a diffusers folder), and a single checkpoint "
            f"must be given as its .safetensors file; nothing was installed")
    family = detect_family(folder)
    files, skipped = _walk(folder)
    for rel in files:
        if rel.suffix == ".safetensors":
            read_safetensors_header(folder / rel)
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelStoreError(f"{folder / 'model_index.json'} is not readable JSON ({e})") from None
    for component in WEIGHT_COMPONENTS:
        spec = index.get(component)
        if not isinstance(spec, list) or not any(spec):
            continue  # not part of this pipeline
        if not any(rel.parts[0] == component and rel.suffix == ".safetensors" for rel in files):
            found = [s for s in skipped if s.startswith(f"{component}/")]
            raise ModelStoreError(
                f"{folder / component} has no .safetensors weights"
                + (f" (only {', '.join(found)}, a pickle format the worker does not load; convert it to "
                   f".safetensors first)" if found else "") + "; nothing was installed")
    return family, files, skipped


def _copy_into(staging: Path, source: Path, files: list[Path], say_bar: bool | None) -> list[dict[str, Any]]:
    """Copy ``files`` of ``source`` into ``staging``; their records (path, size, sha256)."""
    records = []
    total = sum((source / rel).stat().st_size for rel in files)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="copying", file=sys.stderr,
              disable=say_bar) as bar:
        for rel in files:
            with (source / rel).open("rb") as f:
                size, sha256 = store.copy_hashing(f, staging / rel, bar.update)
            records.append({"path": rel.as_posix(), "size": size, "sha256": sha256})
    return records


def import_local(path: Path, *, name: str | None, folder: Path, replace: bool,
                 progress: bool | None = None) -> ImportResult:
    """Install a diffusers folder or a .safetensors checkpoint into ``folder`` (the models folder)."""
    path = path.resolve()
    if not path.exists():
        raise ModelStoreError(f"{path} does not exist")
    name = store.check_name(name or default_name(path))
    target = folder / name
    if path == target.resolve() or target.resolve() in path.parents:
        raise ModelStoreError(f"{path} is already in the models folder; import it under another --name, or "
                              f"import it from somewhere else")
    skipped: list[str] = []
    if path.is_dir():
        family, files, skipped = inspect_folder(path)
        kind, checkpoint, source_root = "diffusers", None, path
    elif path.suffix == ".safetensors":
        family = detect_family(path)  # sd15 or sdxl; anything else is refused there
        files, kind, checkpoint, source_root = [Path(path.name)], "checkpoint", path.name, path.parent
    else:
        raise ModelStoreError(
            f"{path} is not a model Chhavi can import: give a diffusers folder (with model_index.json), a single "
            f".safetensors checkpoint, or a bundle .tar made by export_bundle")
    needed = sum((source_root / rel).stat().st_size for rel in files)
    if target.exists() and not replace:
        existing = store.read_record(target)
        if existing is not None and store.record_matches(target, existing["files"]) and _same_sizes(
                existing, source_root, files):
            # Same name, same files by size: hash the source to be sure it is the very same model.
            if all(store.sha256_file(source_root / rel) == _sha(existing, rel) for rel in files):
                return ImportResult(target, existing, installed=False, skipped=skipped)
        raise ModelStoreError(f"{target} already exists; choose another --name, or use --replace to replace it")
    store.check_free_space(folder, needed, name)
    staging = store.staging_root(folder) / f"{name}.import-{os.getpid()}"
    store.remove_tree(staging)
    staging.mkdir(parents=True)
    try:
        records = _copy_into(staging, source_root, files, None if progress is None else not progress)
        if checkpoint:
            read_safetensors_header(staging / checkpoint)  # the copy, not only the source, is whole
        record = store.make_record(name=name, title=name, family=family, kind=kind,
                                   source={"kind": "import", "path": str(path)}, files=records,
                                   checkpoint=checkpoint)
        store.write_record(staging, record)
        store.install(staging, target, replace=replace)
    except OSError as e:
        if store.is_no_space(e):
            raise ModelStoreError(store.no_space_message(folder, name)) from None
        raise ModelStoreError(f"cannot copy {path} into {folder}: {e.strerror or e}") from None
    finally:
        store.remove_tree(staging)
        store.tidy_staging(folder)
    return ImportResult(target, record, installed=True, skipped=skipped)


def _sha(record: dict[str, Any], rel: Path) -> str | None:
    return next((str(f["sha256"]) for f in record["files"] if f.get("path") == rel.as_posix()), None)


def _same_sizes(record: dict[str, Any], root: Path, files: list[Path]) -> bool:
    listed = {str(f.get("path")): int(f.get("size", -1)) for f in record["files"]}
    return listed == {rel.as_posix(): (root / rel).stat().st_size for rel in files}
