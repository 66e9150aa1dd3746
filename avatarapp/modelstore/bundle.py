"""Bundles: one file that carries a model, and the style packs made for it, to a machine with no network.

A bundle is an uncompressed tar (weights do not compress) written by ``export_bundle``::

    bundle.json             first member: {"format": "chhavi-bundle", "version": 1, "created_at": ...,
                            "model": <the model's chhavi_model.json record>,
                            "files": [{"path": "model/...", "size": ..., "sha256": ...}, ...],
                            "packs": [{"slug", "version", "base_family",
                                       "files": [{"path": "packs/<slug>/...", "size", "sha256"}]}]}
    model/...               the model folder's files (the record files are written afresh on import)
    packs/<slug>/...        each pack folder (pack.toml, LoRA files, preview)

``import_model BUNDLE.tar`` reads ``bundle.json``, refuses anything it does not list (and links,
devices, absolute paths or ``..``), checks every member's size and SHA-256 while extracting into
staging, checks the model's files against the repository's catalogue when the model came from
it, then installs the model and the packs, each folder in one step, and registers the packs.
The checksums catch a damaged or altered file; they do not prove who made the bundle: compare the
bundle's own SHA-256 (printed by export_bundle; ``import_model --sha256``) over a trusted channel.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kombu.exceptions import OperationalError
from tqdm import tqdm

from avatarapp.modelstore import store
from avatarapp.modelstore.catalogue import KINDS, SHA256_RE, catalogue_path, load_catalogue, safe_relative_path
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import MODEL_FAMILIES, WORKER_FAMILIES, detect_family, read_safetensors_header
from avatarapp.modelstore.importer import ImportResult, inspect_folder
from avatarapp.packs.manifest import SLUG_RE, PackError, load_manifest
from avatarapp.packs.registry import put_pack_folder, request_previews, sync_packs

FORMAT = "chhavi-bundle"
VERSION = 1
MANIFEST = "bundle.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass
class ExportResult:
    path: Path
    size: int
    sha256: str
    packs: list[str]


class _HashingReader:
    """Reads a file for tarfile while hashing what it hands over."""

    def __init__(self, f: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self.f, self.digest, self.on_bytes = f, hashlib.sha256(), on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        self.on_bytes(len(data))
        return data


class _HashingWriter(io.RawIOBase):
    """The tar's output file, hashed as it is written (the bundle's own SHA-256, with no second read)."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self.f, self.digest, self.position = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.f.write(view)
        self.digest.update(view)
        self.position += len(view)
        return len(view)

    def tell(self) -> int:
        return self.position


def _files_of(folder: Path) -> list[Path]:
    """A pack folder's files (relative), hidden ones left out."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _packs_for(family: str, packs_dir: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every valid pack folder made for ``family``, with its files' sizes and SHA-256."""
    packs = []
    folders = sorted(p for p in packs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if packs_dir.is_dir() else []
    for folder in folders:
        try:
            manifest = load_manifest(folder)
        except PackError as e:
            say(f"left out the pack folder {folder.name}: {e}")
            continue
        if manifest.base_family != family:
            continue
        files = [{"path": f"packs/{manifest.slug}/{rel.as_posix()}", "size": (folder / rel).stat().st_size,
                  "sha256": store.sha256_file(folder / rel), "source": str(folder / rel)} for rel in _files_of(folder)]
        packs.append({"slug": manifest.slug, "version": manifest.version, "base_family": manifest.base_family,
                      "files": files})
    return packs


def export_bundle(name: str, out: Path, *, folder: Path, packs_dir: Path, with_packs: bool,
                  say: Callable[[str], None], progress: bool | None = None) -> ExportResult:
    """Write the installed model ``name`` (and, with ``with_packs``, its family's packs) into ``out``."""
    model_dir = folder / store.check_name(name)
    record = store.read_record(model_dir)
    if record is None:
        installed = sorted(p.name for p in folder.iterdir() if store.read_record(p)) if folder.is_dir() else []
        raise ModelStoreError(
            f"{name} is not a model installed by fetch_model or import_model in {folder} (no chhavi_model.json); "
            f"installed: {', '.join(installed) or 'none'}")
    if not store.record_matches(model_dir, record["files"]):
        raise ModelStoreError(f"{model_dir} no longer matches its record (a file is missing or has another size); "
                              f"install it again before exporting it")
    packs = _packs_for(str(record["family"]), packs_dir, say) if with_packs else []
    model_files = [{"path": f"model/{f['path']}", "size": int(f["size"]), "sha256": str(f["sha256"]),
                    "source": str(model_dir / str(f["path"]))} for f in record["files"]]
    pack_files = [f for pack in packs for f in pack["files"]]
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": record,
        "files": [{k: v for k, v in f.items() if k != "source"} for f in model_files],
        "packs": [{**p, "files": [{k: v for k, v in f.items() if k != "source"} for f in p["files"]]} for p in packs],
    }
    payload = json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n"
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    total = sum(int(f["size"]) for f in model_files + pack_files)
    store.check_free_space(out.parent, total + len(payload), out.name)
    part = out.with_name(out.name + ".part")
    now = int(time.time())
    try:
        with part.open("wb") as raw, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=out.name, file=sys.stderr,
                                          disable=None if progress is None else not progress) as bar:
            writer = _HashingWriter(raw)
            with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_member(MANIFEST, len(payload), now), io.BytesIO(payload))
                for f in model_files + pack_files:
                    source = Path(f["source"])
                    if source.stat().st_size != f["size"]:
                        raise ModelStoreError(f"{source} changed size while the bundle was written; try again")
                    with source.open("rb") as fh:
                        reader = _HashingReader(fh, bar.update)
                        tar.addfile(_member(f["path"], int(f["size"]), now), reader)
                    if reader.digest.hexdigest() != f["sha256"]:
                        raise ModelStoreError(
                            f"{source} does not match its record: expected sha256 {f['sha256']}, got "
                            f"{reader.digest.hexdigest()}; the file is damaged: install the model again")
            raw.flush()
            os.fsync(raw.fileno())
            size = writer.position
        os.replace(part, out)
    except OSError as e:
        part.unlink(missing_ok=True)
        if store.is_no_space(e):
            raise ModelStoreError(f"no space left on the disk of {out.parent} while writing {out.name}; "
                                  f"free some space and run again") from None
        raise ModelStoreError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return ExportResult(out, size, writer.digest.hexdigest(), [p["slug"] for p in packs])


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info


# --- import ---------------------------------------------------------------------------------

def _check_files(entries: Any, prefix: str, where: str) -> dict[str, tuple[int, str]]:
    if not isinstance(entries, list):
        raise ModelStoreError(f"{where}: its file list is not a list")
    files: dict[str, tuple[int, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ModelStoreError(f"{where}: a file entry is not an object")
        path, size, sha256 = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not path.startswith(prefix):
            raise ModelStoreError(f"{where}: the file {path!r} is not under {prefix}")
        safe_relative_path(path, where)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ModelStoreError(f"{where}: {path} has no valid size")
        if not isinstance(sha256, str) or not SHA256_RE.match(sha256):
            raise ModelStoreError(f"{where}: {path} has no valid sha256")
        if path in files:
            raise ModelStoreError(f"{where}: {path} is listed twice")
        files[path] = (size, sha256)
    return files


def _read_manifest(tar: tarfile.TarFile, where: str) -> tuple[dict[str, Any], dict[str, tuple[int, str]]]:
    """bundle.json, checked: (the manifest, every member it lists by path)."""
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise ModelStoreError(f"{where} is not a Chhavi bundle: its first member is not {MANIFEST}")
    if first.size > MAX_MANIFEST_BYTES:
        raise ModelStoreError(f"{where}: {MANIFEST} is implausibly large ({first.size} bytes)")
    stream = tar.extractfile(first)
    try:
        manifest = json.loads(stream.read() if stream else b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelStoreError(f"{where}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelStoreError(f"{where} is not a Chhavi bundle ({MANIFEST} has no format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise ModelStoreError(f"{where} is a bundle of format version {manifest.get('version')!r}; this Chhavi "
                              f"reads version {VERSION}: update Chhavi, or export the bundle again")
    record = manifest.get("model")
    if not isinstance(record, dict) or not isinstance(record.get("files"), list):
        raise ModelStoreError(f"{where}: {MANIFEST} has no model record")
    family = record.get("family")
    if family not in WORKER_FAMILIES or record.get("kind") not in KINDS:
        raise ModelStoreError(f"{where}: the model's family {family!r} or kind {record.get('kind')!r} is not "
                              f"one Chhavi supports")
    store.check_name(str(record.get("name", "")))
    files = _check_files(manifest.get("files"), "model/", f"{where} {MANIFEST}")
    # The record and the file list must agree: an edit to one of them alone is caught here.
    listed = {f"model/{f.get('path')}": (f.get("size"), f.get("sha256")) for f in record["files"]
              if isinstance(f, dict)}
    if listed != files:
        raise ModelStoreError(f"{where}: {MANIFEST} is inconsistent (the model record and the file list differ); "
                              f"the bundle was altered or damaged")
    packs = manifest.get("packs", [])
    if not isinstance(packs, list):
        raise ModelStoreError(f"{where}: {MANIFEST} packs must be a list")
    slugs = set()
    for pack in packs:
        if not isinstance(pack, dict) or not isinstance(pack.get("slug"), str) or not SLUG_RE.match(pack["slug"]):
            raise ModelStoreError(f"{where}: {MANIFEST} lists a pack with no valid slug")
        slug = pack["slug"]
        if slug in slugs:
            raise ModelStoreError(f"{where}: pack {slug} is listed twice")
        slugs.add(slug)
        if pack.get("base_family") != family:
            raise ModelStoreError(
                f"{where}: the pack {slug} is made for {pack.get('base_family')!r} models but the bundle's model "
                f"{record.get('name')} is {family}; nothing was installed")
        pack_files = _check_files(pack.get("files"), f"packs/{slug}/", f"{where} pack {slug}")
        if f"packs/{slug}/pack.toml" not in pack_files:
            raise ModelStoreError(f"{where}: pack {slug} has no pack.toml")
        files.update(pack_files)
    return manifest, files


def _check_against_catalogue(record: dict[str, Any], where: str, say: Callable[[str], None]) -> None:
    """A model that came from the catalogue must still have the catalogue's files, byte for byte."""
    source = record.get("source")
    if not isinstance(source, dict) or source.get("kind") != "catalogue":
        return
    try:
        entry = load_catalogue(catalogue_path()).get(str(source.get("catalogue_name")))
    except ModelStoreError as e:
        say(f"note: the catalogue could not be read to cross-check the bundle ({e})")
        return
    if entry is None or entry.repo != source.get("repo") or entry.revision != source.get("revision"):
        say(f"note: {source.get('repo')}@{str(source.get('revision'))[:12]} is not in this catalogue; the bundle "
            f"is checked against its own manifest only")
        return
    expected = {f.save_as: (f.size, f.sha256) for f in entry.files}
    got = {str(f.get("path")): (f.get("size"), f.get("sha256")) for f in record["files"]}
    if got != expected:
        wrong = sorted(p for p in set(expected) | set(got) if expected.get(p) != got.get(p))
        raise ModelStoreError(
            f"{where}: the model's files differ from the catalogue entry {entry.name} ({entry.repo}@"
            f"{entry.revision[:12]}) for {', '.join(wrong)}: the bundle was altered; nothing was installed")


def _same_pack(target: Path, files: dict[str, tuple[int, str]], slug: str) -> bool:
    if not target.is_dir():
        return False
    prefix = f"packs/{slug}/"
    wanted = {p[len(prefix):]: v for p, v in files.items() if p.startswith(prefix)}
    have = {rel.as_posix() for rel in _files_of(target)}
    if have != set(wanted):
        return False
    return all((target / p).stat().st_size == size and store.sha256_file(target / p) == sha
               for p, (size, sha) in wanted.items())


def _install_pack(staged: Path, target: Path) -> None:
    """Move a checked pack folder into the packs folder in one step (copied first across disks)."""
    put_pack_folder(staged, target, move=True)
    store.fsync_dir(target.parent)


def _extract(tar: tarfile.TarFile, staging: Path, files: dict[str, tuple[int, str]], where: str,
             bar: tqdm[Any]) -> None:
    """Every member into ``staging``, each checked against the manifest; anything else is refused."""
    seen: set[str] = set()
    while (member := tar.next()) is not None:
        name = member.name
        if member.isdir() and any(p.startswith(name.rstrip("/") + "/") for p in files):
            continue
        if name.startswith("/") or ".." in name.split("/"):
            raise ModelStoreError(f"{where}: refused member {name!r} (a path outside the bundle); nothing was "
                                  f"installed")
        try:
            tarfile.data_filter(member, str(staging))
        except tarfile.FilterError as e:
            raise ModelStoreError(f"{where}: refused member {name!r} ({e}); nothing was installed") from None
        if not member.isfile():
            raise ModelStoreError(f"{where}: member {name!r} is not a regular file (a link or a device); refused, "
                                  f"nothing was installed")
        if name not in files:
            raise ModelStoreError(f"{where}: member {name!r} is not listed in {MANIFEST}; refused, nothing was "
                                  f"installed")
        if name in seen:
            raise ModelStoreError(f"{where}: member {name!r} appears twice; refused, nothing was installed")
        seen.add(name)
        size, sha256 = files[name]
        if member.size != size:
            raise ModelStoreError(f"{where}: {name} is {member.size} bytes, {MANIFEST} says {size}; the bundle "
                                  f"was altered or damaged, nothing was installed")
        stream = tar.extractfile(member)
        if stream is None:  # pragma: no cover - a regular file always has a stream
            raise ModelStoreError(f"{where}: cannot read {name}")
        _, got = store.copy_hashing(stream, staging / name, bar.update)
        if got != sha256:
            raise ModelStoreError(f"{where}: {name} failed its checksum: expected sha256 {sha256}, got {got}; the "
                                  f"bundle was altered or damaged, nothing was installed")
    missing = sorted(set(files) - seen)
    if missing:
        raise ModelStoreError(f"{where}: {len(missing)} files listed in {MANIFEST} are missing (for example "
                              f"{missing[0]}); the bundle is incomplete, nothing was installed")


def _check_model(model: Path, record: dict[str, Any], where: str) -> None:
    """The extracted model is what its record says: readable weights of the stated family."""
    family, kind, checkpoint = record["family"], record["kind"], record.get("checkpoint")
    if kind == "checkpoint":
        if not isinstance(checkpoint, str) or not (model / checkpoint).is_file():
            raise ModelStoreError(f"{where}: the checkpoint {checkpoint!r} named by the record is not in the bundle")
        found = detect_family(model / checkpoint)
    elif kind == "diffusers":
        found, _, _ = inspect_folder(model)
    else:
        for path in model.rglob("*.safetensors"):
            read_safetensors_header(path)
        return
    if family in MODEL_FAMILIES and found != family:
        raise ModelStoreError(f"{where}: the record says the model is {family}, but its weights are {found}; "
                              f"nothing was installed")


def import_bundle(path: Path, *, name: str | None, folder: Path, packs_dir: Path, replace: bool,
                  expected_sha256: str | None, say: Callable[[str], None],
                  progress: bool | None = None) -> ImportResult:
    """Install the model and packs of a bundle made by export_bundle."""
    path = path.resolve()
    where = str(path)
    if expected_sha256:
        got = store.sha256_file(path)
        if got != expected_sha256.lower():
            raise ModelStoreError(f"{where} has sha256 {got}, not the expected {expected_sha256}; nothing was "
                                  f"installed")
    try:
        tar = tarfile.open(path, mode="r:*")  # export_bundle writes it plain; someone may have gzipped it
    except (tarfile.TarError, OSError) as e:
        raise ModelStoreError(f"{where} is not a bundle made by export_bundle ({e})") from None
    staging = store.staging_root(folder) / f".bundle-{os.getpid()}"
    with tar:
        try:
            manifest, files = _read_manifest(tar, where)
        except tarfile.TarError as e:
            raise ModelStoreError(f"{where} is not a readable tar file ({e})") from None
        record = manifest["model"]
        _check_against_catalogue(record, where, say)
        model_name = store.check_name(name or str(record["name"]))
        target = folder / model_name
        packs = [str(p["slug"]) for p in manifest.get("packs", [])]
        model_present = target.exists() and store.record_matches(
            target, [{"path": p[len("model/"):], "size": s, "sha256": h} for p, (s, h) in files.items()
                     if p.startswith("model/")])
        if target.exists() and not model_present and not replace:
            raise ModelStoreError(f"{target} already exists with other files; use --name to install the bundle's "
                                  f"model under another name, or --replace to replace it")
        for slug in packs:
            pack_target = packs_dir / slug
            if pack_target.exists() and not replace and not _same_pack(pack_target, files, slug):
                raise ModelStoreError(f"the pack {slug} is already installed in {pack_target} with other files; "
                                      f"use --replace to replace it")
        total = sum(size for size, _ in files.values())
        store.check_free_space(folder, total, path.name)
        store.remove_tree(staging)
        staging.mkdir(parents=True)
        try:
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name, file=sys.stderr,
                      disable=None if progress is None else not progress) as bar:
                try:
                    _extract(tar, staging, files, where, bar)
                except tarfile.TarError as e:
                    raise ModelStoreError(f"{where} is damaged ({e}); nothing was installed") from None
            _check_model(staging / "model", record, where)
            for slug in packs:
                try:
                    pack = load_manifest(staging / "packs" / slug)
                except PackError as e:
                    raise ModelStoreError(f"{where}: the pack {slug} is not valid ({e}); nothing was installed") \
                        from None
                if pack.slug != slug or pack.base_family != record["family"]:
                    raise ModelStoreError(
                        f"{where}: the pack folder {slug} holds the pack {pack.slug} for {pack.base_family} models, "
                        f"but the bundle's model is {record['family']}; nothing was installed")
            installed = not model_present
            if installed:
                new_record = store.make_record(
                    name=model_name, title=str(record.get("title", model_name)), family=str(record["family"]),
                    kind=str(record["kind"]), source={"kind": "bundle", "path": where,
                                                      "original": record.get("source")},
                    files=[{"path": p[len("model/"):], "size": s, "sha256": h} for p, (s, h) in files.items()
                           if p.startswith("model/")],
                    checkpoint=record.get("checkpoint"), licence=str(record.get("licence", "")),
                    licence_url=str(record.get("licence_url", "")), commercial_use=record.get("commercial_use"))
                store.write_record(staging / "model", new_record)
                store.install(staging / "model", target, replace=True)
            for slug in packs:
                if not _same_pack(packs_dir / slug, files, slug):
                    _install_pack(staging / "packs" / slug, packs_dir / slug)
        except OSError as e:
            if store.is_no_space(e):
                raise ModelStoreError(store.no_space_message(folder, path.name)) from None
            raise ModelStoreError(f"cannot install from {where}: {e.strerror or e}") from None
        finally:
            store.remove_tree(staging)
            store.tidy_staging(folder)
    if packs:
        sync_packs(packs_dir)
        try:
            request_previews()  # warm workers of this family render the new packs' previews between jobs
        except (OperationalError, OSError) as e:
            say(f"the packs are registered, but the workers could not be asked to render their previews ({e}); "
                f"they do so when they next start")
    final = store.read_record(target) or record
    return ImportResult(target, final, installed=installed, packs=packs)
