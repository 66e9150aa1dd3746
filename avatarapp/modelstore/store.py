"""The models folder (setting AVATAR_MODELS_DIR): names, records, staging and atomic installs.

Every command that puts a model there builds it in ``<models>/.staging/`` first and moves the
finished folder into ``<models>/<name>/`` with one ``os.replace`` once every file is verified,
so a worker never sees a half-written model. One command at a time writes to a models folder
(an advisory lock on the folder itself).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from avatarapp.modelstore.catalogue import RECORD_NAME
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import FAMILY_MARKER
from avatarapp.modelstore.identity import KIND as IDENTITY_KIND
from avatarapp.modelstore.identity import SETTING as IDENTITY_SETTING
from avatarapp.modelstore.identity import add_encoder_config
from avatarapp.modelstore.pipeline_configs import PIPELINE_FAMILIES, write_pipeline_configs

RECORD_FORMAT = 1
STAGING = ".staging"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CHUNK = 1024 * 1024
# Free space kept on top of what a model needs, so installing one never fills the disk to the brim.
DISK_MARGIN = 100_000_000
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def models_dir() -> Path:
    from django.conf import settings

    return Path(settings.AVATAR_MODELS_DIR)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ModelStoreError(f"{name!r} is not a usable model name: use letters, digits, '.', '_' or '-' "
                              f"(at most 64, not starting with '.' or '-')")
    return name


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashing(source: IO[bytes], dest: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Copy a stream into a new file (synced to disk); its size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def is_no_space(error: OSError) -> bool:
    return error.errno in NO_SPACE


def no_space_message(folder: Path, what: str) -> str:
    return (f"no space left on the disk of {folder} while writing {what}; nothing was installed. Free some space "
            f"(or set AVATAR_MODELS_DIR to a larger disk) and run the command again")


def free_space(folder: Path) -> int:
    """Bytes free for us on the disk holding ``folder`` (tests replace this)."""
    return shutil.disk_usage(folder).free


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` unless they fit with a margin."""
    free = free_space(folder)
    if needed + DISK_MARGIN > free:
        raise ModelStoreError(
            f"not enough free space for {what} in {folder}: {human_size(needed)} still to write plus a "
            f"{human_size(DISK_MARGIN)} margin, but only {human_size(free)} is free. Free some space, or set "
            f"AVATAR_MODELS_DIR to a larger disk")


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the models folder's write lock (one fetch/import at a time per folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelStoreError(f"another fetch_model or import_model is writing to {folder}; "
                                  f"wait for it to finish, then run this again") from None
        yield
    finally:
        os.close(fd)


def staging_root(folder: Path) -> Path:
    return folder / STAGING


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def tidy_staging(folder: Path) -> None:
    """Remove empty folders under ``<models>/.staging`` and the folder itself when empty."""
    root = staging_root(folder)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record of an installed model folder, or None when the folder has none (or a broken one)."""
    path = folder / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), list) else None


def make_record(*, name: str, title: str, family: str, kind: str, source: dict[str, Any],
                files: list[dict[str, Any]], checkpoint: str | None, licence: str = "", licence_url: str = "",
                commercial_use: bool | None = None) -> dict[str, Any]:
    return {
        "format": RECORD_FORMAT,
        "name": name,
        "title": title,
        "family": family,
        "kind": kind,
        "checkpoint": checkpoint,
        "licence": licence,
        "licence_url": licence_url,
        "commercial_use": commercial_use,
        "source": source,
        "files": sorted(files, key=lambda f: str(f["path"])),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """The record (chhavi_model.json) and the worker's family marker (chhavi_family.json)."""
    write_json(folder / RECORD_NAME, record)
    write_json(folder / FAMILY_MARKER, {"family": record["family"]})


def record_matches(folder: Path, expected: list[dict[str, Any]], *, rehash: bool = False) -> bool:
    """Whether ``folder`` holds a record listing exactly these files and every one is there at its size
    (and, with ``rehash``, still has its SHA-256)."""
    record = read_record(folder)
    if record is None:
        return False
    wanted = {(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in expected}
    listed = {(str(f.get("path")), int(f.get("size", -1)), str(f.get("sha256"))) for f in record["files"]}
    if wanted != listed or not (folder / FAMILY_MARKER).is_file():
        return False
    for path, size, sha256 in wanted:
        file = folder / path
        if not file.is_file() or file.stat().st_size != size:
            return False
        if rehash and sha256_file(file) != sha256:
            return False
    return True


def add_pipeline_configs(folder: Path) -> list[Path]:
    """A single SD 1.5 or SDXL checkpoint needs its pipeline's config files to load with no hub: when
    the folder has none (the catalogue entry or the import brought only the checkpoint), Chhavi's own
    are written beside it (avatarapp/modelstore/pipeline_configs), each checked against its SHA-256."""
    record = read_record(folder)
    if (record is None or record.get("kind") != "checkpoint" or record.get("family") not in PIPELINE_FAMILIES
            or (folder / "model_index.json").is_file()):
        return []
    return write_pipeline_configs(str(record["family"]), folder)


def install(staging: Path, target: Path, *, replace: bool) -> None:
    """Move a finished staging folder into place in one step; an older install is swapped out."""
    add_pipeline_configs(staging)
    record = read_record(staging)
    add_encoder_config(staging, record.get("kind") if record else None)
    for path in staging.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    fsync_dir(staging)
    if target.exists() or target.is_symlink():
        if not replace:
            raise ModelStoreError(f"{target} already exists; use --replace to replace it")
        old = staging.with_name(f"{staging.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        remove_tree(old)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)


def use_hint(record: dict[str, Any], target: Path) -> str:
    """How to point the worker at an installed model, from its record."""
    family, kind, checkpoint = record.get("family"), record.get("kind"), record.get("checkpoint")
    paths = {str(f.get("path")) for f in record.get("files", [])}
    if kind == "lora":
        weights = sorted(p for p in paths if p.endswith(".safetensors"))
        return (f"a LoRA for {family} models: copy {target / (weights[0] if weights else '')} into a style pack "
                f"folder of base_family {family} (pack.toml [fast] lora = ..., or a [[lora]] file)")
    if kind == IDENTITY_KIND:
        return (f"an identity adapter for {family} models: set {IDENTITY_SETTING}={target.name} (or {target}), "
                f"then packs may set identity_strength")
    if kind == "checkpoint" and checkpoint:
        if "model_index.json" in paths:
            return (f"to use it, set AVATAR_BASE_MODEL={target / checkpoint} AVATAR_BASE_CONFIG={target} "
                    f"(the pipeline's configs are in that folder)")
        return f"to use it, set AVATAR_BASE_MODEL={target / checkpoint}"
    return f"to use it, set AVATAR_BASE_MODEL={target}"
