"""The catalogue of models ``fetch_model`` can download (``catalogue.toml``, setting AVATAR_MODEL_CATALOGUE).

Each entry pins a hub repository to a commit and lists every file with its size and SHA-256,
so a download is checked byte for byte and a mirror (HF_ENDPOINT) cannot hand over something
else. The format::

    [models.sd15]                 # the NAME given to fetch_model
    title = "Stable Diffusion 1.5"
    family = "sd15"               # sd15 | sdxl: what the worker loads (a LoRA: the family it fits)
    kind = "checkpoint"           # diffusers | checkpoint | lora | ip_adapter
    repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    revision = "<40-hex commit>"
    licence = "CreativeML OpenRAIL-M"
    licence_url = "https://..."
    commercial_use = true
    suits = "GPU ..., or CPU with few steps"
    [[models.sd15.files]]
    path = "v1-5-pruned-emaonly.safetensors"   # path inside the hub repo
    size = 4265146304
    sha256 = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"
    # optional: repo = "...", revision = "..." to take this file from another repository (e.g. the
    # configs of a single-file checkpoint), save_as = "unet/config.json" to lay it out elsewhere.

An ``ip_adapter`` entry is an identity adapter (setting AVATAR_IDENTITY_ADAPTER): its weights saved as
``ip_adapter.safetensors`` and its CLIP image encoder's as ``image_encoder/model.safetensors`` (the
encoder's config.json may be listed too; when it is not, Chhavi writes its ViT-H-14 one, see
avatarapp/modelstore/identity.py).

Unknown keys are ignored, so entries may carry notes for people (``notes = "..."``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import FAMILY_MARKER, MODEL_FAMILIES
from avatarapp.modelstore.identity import ENCODER_DIR, WEIGHTS_NAME
from avatarapp.modelstore.identity import KIND as IDENTITY_KIND

KINDS = ("diffusers", "checkpoint", "lora", IDENTITY_KIND)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Files Chhavi writes into every installed model folder; no model file may take their names.
RECORD_NAME = "chhavi_model.json"
RESERVED_NAMES = (RECORD_NAME, FAMILY_MARKER)

DEFAULT_CATALOGUE = Path(__file__).resolve().parent / "catalogue.toml"


@dataclass(frozen=True)
class CatalogueFile:
    """One file of an entry: where it is on the hub, where it goes in the model folder, what it must be."""

    path: str  # inside the hub repository
    size: int
    sha256: str
    repo: str  # usually the entry's own repository and revision
    revision: str
    save_as: str  # path inside the installed model folder (usually = path)


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    title: str
    family: str
    kind: str
    repo: str
    revision: str
    licence: str
    licence_url: str
    commercial_use: bool
    suits: str
    files: tuple[CatalogueFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def checkpoint(self) -> str | None:
        """A checkpoint entry's single-file weights, at the top of the model folder."""
        if self.kind != "checkpoint":
            return None
        return next(f.save_as for f in self.files if "/" not in f.save_as and f.save_as.endswith(".safetensors"))


def safe_relative_path(value: str, where: str) -> str:
    """A relative POSIX path with no '..', no hidden parts and no backslashes, or ModelStoreError."""
    posix = PurePosixPath(value)
    if (not value or value.startswith("/") or "\\" in value or "\x00" in value
            or any(part in ("", ".", "..") or part.startswith(".") for part in value.split("/"))
            or str(posix) != value):
        raise ModelStoreError(f"{where}: {value!r} must be a plain relative path inside the model folder "
                              f"(no leading '/', no '..', no hidden parts)")
    return value


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ModelStoreError(f"{where}: '{key}' is missing")
    value = table[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ModelStoreError(f"{where}: '{key}' must be a {'whole number' if kind is int else kind.__name__}")
    return value


def _entry(name: str, table: Any, where: str) -> CatalogueEntry:
    if not NAME_RE.match(name):
        raise ModelStoreError(f"{where}: the name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(table, dict):
        raise ModelStoreError(f"{where}: [models.{name}] must be a table")
    family = _get(table, "family", str, where)
    if family not in MODEL_FAMILIES:
        raise ModelStoreError(f"{where}: family {family!r} must be one of {', '.join(MODEL_FAMILIES)}")
    kind = _get(table, "kind", str, where)
    if kind not in KINDS:
        raise ModelStoreError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
    repo = _get(table, "repo", str, where)
    revision = _get(table, "revision", str, where)
    files_table = table.get("files")
    if not isinstance(files_table, list) or not files_table:
        raise ModelStoreError(f"{where}: no [[models.{name}.files]] listed")
    files, seen = [], set()
    for i, raw in enumerate(files_table, 1):
        at = f"{where}, file {i}"
        if not isinstance(raw, dict):
            raise ModelStoreError(f"{at}: must be a table")
        path = safe_relative_path(_get(raw, "path", str, at), at)
        at = f"{where}, file {path}"
        size = _get(raw, "size", int, at)
        if size < 0:
            raise ModelStoreError(f"{at}: size must not be negative")
        sha256 = _get(raw, "sha256", str, at).lower()
        if not SHA256_RE.match(sha256):
            raise ModelStoreError(f"{at}: sha256 must be 64 hexadecimal digits")
        file_repo = raw.get("repo", repo)
        file_revision = raw.get("revision", revision)
        save_as = safe_relative_path(str(raw.get("save_as", path)), at)
        if save_as in RESERVED_NAMES:
            raise ModelStoreError(f"{at}: {save_as} is a name Chhavi writes itself")
        if save_as in seen:
            raise ModelStoreError(f"{at}: {save_as} is listed twice")
        seen.add(save_as)
        for label, value, pattern, hint in (("repo", file_repo, REPO_RE, "owner/name"),
                                            ("revision", file_revision, REVISION_RE, "a 40-hex commit id")):
            if not isinstance(value, str) or not pattern.match(value):
                raise ModelStoreError(f"{at}: {label} {value!r} must be {hint} (pin a commit, not a branch)")
        files.append(CatalogueFile(path=path, size=size, sha256=sha256, repo=file_repo, revision=file_revision,
                                   save_as=save_as))
    top_weights = [f for f in files if "/" not in f.save_as and f.save_as.endswith(".safetensors")]
    if kind == "checkpoint" and len(top_weights) != 1:
        raise ModelStoreError(f"{where}: a checkpoint entry needs exactly one .safetensors file at the top of the "
                              f"folder (found {len(top_weights)}); its configs go in subfolders")
    if kind == "diffusers" and "model_index.json" not in seen:
        raise ModelStoreError(f"{where}: a diffusers entry must list model_index.json")
    if kind == "lora" and not any(f.save_as.endswith(".safetensors") for f in files):
        raise ModelStoreError(f"{where}: a lora entry must list its .safetensors file")
    identity_files = {WEIGHTS_NAME, f"{ENCODER_DIR}/model.safetensors"}
    if kind == IDENTITY_KIND and not identity_files <= seen:
        raise ModelStoreError(f"{where}: an ip_adapter entry saves its weights as {WEIGHTS_NAME} and its image "
                              f"encoder's as {ENCODER_DIR}/model.safetensors (save_as = ...)")
    commercial = table.get("commercial_use", False)
    if not isinstance(commercial, bool):
        raise ModelStoreError(f"{where}: commercial_use must be true or false")
    return CatalogueEntry(
        name=name,
        title=str(table.get("title", name)),
        family=family,
        kind=kind,
        repo=repo,
        revision=revision,
        licence=str(table.get("licence", "")),
        licence_url=str(table.get("licence_url", "")),
        commercial_use=commercial,
        suits=str(table.get("suits", "")),
        files=tuple(files),
    )


def load_catalogue(path: Path) -> dict[str, CatalogueEntry]:
    """Every entry of the catalogue at ``path`` by name; ModelStoreError names what to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelStoreError(f"model catalogue {path} not found (setting AVATAR_MODEL_CATALOGUE)") from None
    except OSError as e:
        raise ModelStoreError(f"cannot read the model catalogue {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ModelStoreError(f"model catalogue {path} is not valid TOML ({e})") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ModelStoreError(f"model catalogue {path}: [models] must be a table")
    return {name: _entry(name, table, f"{path} [models.{name}]") for name, table in models.items()}


def catalogue_path() -> Path:
    """The catalogue the settings name (AVATAR_MODEL_CATALOGUE), or the bundled one."""
    from django.conf import settings

    return Path(getattr(settings, "AVATAR_MODEL_CATALOGUE", DEFAULT_CATALOGUE))
