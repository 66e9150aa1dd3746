"""Getting a real base model: fetch_model (resumable, verified downloads from a fake hub served
here), import_model (folders, checkpoints, bundles) and export_bundle, air-gapped round trips.

Every test runs the real management command against a real local HTTP server; the files are
small and made up (fake safetensors headers where a checkpoint is needed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings
from safetensors.numpy import save_file

from avatarapp.modelstore import download, store
from avatarapp.modelstore.catalogue import load_catalogue
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.families import detect_family
from tests.hub_server import HubServer, SilentServer, closed_port_endpoint

ROOT = Path(__file__).resolve().parent.parent
REPO = "chhavi-test/tiny-sd15"
REVISION = "0123456789abcdef0123456789abcdef01234567"
MB = 1024 * 1024

SD15_KEYS = ["cond_stage_model.transformer.text_model.final_layer_norm.weight",
             "model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"]
SDXL_KEYS = ["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
             "conditioner.embedders.1.model.ln_final.weight", "model.diffusion_model.input_blocks.0.0.weight"]


# --- made-up weights and catalogues --------------------------------------------------------

def fake_safetensors(keys: list[str], size: int, seed: int = 0) -> bytes:
    """A checkpoint-shaped file of about ``size`` bytes: a real safetensors header, random data."""
    per = max(4, (size // len(keys)) // 4 * 4)
    header, offset = {}, 0
    for key in keys:
        header[key] = {"dtype": "F32", "shape": [per // 4], "data_offsets": [offset, offset + per]}
        offset += per
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + np.random.default_rng(seed).bytes(offset)


def write_checkpoint(path: Path, keys: list[str], rows: int = 64) -> Path:
    """A small real .safetensors file written with the safetensors package (numpy, no torch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(keys))
    save_file({key: rng.standard_normal((rows, 8)).astype(np.float32) for key in keys}, str(path))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def catalogue_toml(entries: dict[str, dict]) -> str:
    lines = []
    for name, entry in entries.items():
        lines.append(f"[models.{name}]")
        for key in ("title", "family", "kind", "repo", "revision", "licence", "licence_url", "suits"):
            lines.append(f"{key} = {json.dumps(entry.get(key, ''))}")
        lines.append(f"commercial_use = {'true' if entry.get('commercial_use', True) else 'false'}")
        for file in entry["files"]:
            lines.append(f"[[models.{name}.files]]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in file.items())
        lines.append("")
    return "\n".join(lines)


class FakeModels:
    """The catalogue written for a test and the files the fake hub serves for it."""

    def __init__(self, hub: HubServer, path: Path, checkpoint_size: int = 3 * MB) -> None:
        self.hub, self.path = hub, path
        self.checkpoint = fake_safetensors(SD15_KEYS, checkpoint_size)
        self.configs = {
            "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline"}).encode(),
            "unet/config.json": json.dumps({"cross_attention_dim": 768, "in_channels": 4}).encode(),
            "tokenizer/vocab.json": json.dumps({"a": 0, "b": 1}).encode(),
        }
        hub.add(REPO, REVISION, "tiny.safetensors", self.checkpoint)
        for name, data in self.configs.items():
            hub.add(REPO, REVISION, name, data)
        self.entries: dict[str, dict] = {"tiny": self.entry()}
        self.save()

    def entry(self, **changes: object) -> dict:
        files = [{"path": "tiny.safetensors", "size": len(self.checkpoint), "sha256": sha(self.checkpoint)}]
        files += [{"path": name, "size": len(data), "sha256": sha(data)} for name, data in self.configs.items()]
        entry = {"title": "Tiny SD 1.5", "family": "sd15", "kind": "checkpoint", "repo": REPO, "revision": REVISION,
                 "licence": "CreativeML OpenRAIL-M", "licence_url": "https://example.org/licence",
                 "commercial_use": True, "suits": "tests", "files": files}
        entry.update(changes)
        return entry

    def save(self) -> None:
        self.path.write_text(catalogue_toml(self.entries), encoding="utf-8")


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, hub: HubServer) -> Settings:
    """Models, packs and catalogue under tmp_path; HF_ENDPOINT at the fake hub."""
    settings.AVATAR_MODELS_DIR = tmp_path / "models"
    settings.AVATAR_PACKS_DIR = tmp_path / "packs"
    settings.AVATAR_MODEL_CATALOGUE = tmp_path / "catalogue.toml"
    settings.AVATAR_DOWNLOAD_TIMEOUT = 2.0
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(download, "BACKOFF_SECONDS", 0.0)
    return settings


@pytest.fixture
def models(env: Settings, hub: HubServer) -> FakeModels:
    return FakeModels(hub, env.AVATAR_MODEL_CATALOGUE)


def fetch(*args: str) -> str:
    out = io.StringIO()
    call_command("fetch_model", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def left_behind(models_dir: Path) -> list[str]:
    """Everything in the models folder: after a refusal, nothing."""
    return sorted(str(p.relative_to(models_dir)) for p in models_dir.rglob("*")) if models_dir.exists() else []


def assert_installed_and_verified(folder: Path, models: FakeModels) -> dict:
    record = json.loads((folder / "chhavi_model.json").read_text())
    assert json.loads((folder / "chhavi_family.json").read_text()) == {"family": "sd15"}
    assert (folder / "tiny.safetensors").read_bytes() == models.checkpoint
    for name, data in models.configs.items():
        assert (folder / name).read_bytes() == data
    for file in record["files"]:
        assert sha((folder / file["path"]).read_bytes()) == file["sha256"]
        assert (folder / file["path"]).stat().st_size == file["size"]
    return record


# --- fetch_model -----------------------------------------------------------------------------

def test_a_full_download_installs_the_model_with_its_verified_record(models: FakeModels, env: Settings,
                                                                     hub: HubServer) -> None:
    out = fetch("tiny")

    folder = env.AVATAR_MODELS_DIR / "tiny"
    assert "installed tiny" in out and "every file verified" in out
    record = assert_installed_and_verified(folder, models)
    assert {k: record[k] for k in ("name", "title", "family", "kind", "checkpoint", "licence", "commercial_use")} == {
        "name": "tiny", "title": "Tiny SD 1.5", "family": "sd15", "kind": "checkpoint",
        "checkpoint": "tiny.safetensors", "licence": "CreativeML OpenRAIL-M", "commercial_use": True}
    assert record["source"] == {"kind": "catalogue", "catalogue_name": "tiny", "repo": REPO, "revision": REVISION,
                                "endpoint": hub.endpoint}
    assert {f["path"] for f in record["files"]} == {"tiny.safetensors", *models.configs}
    assert record["installed_at"]
    # A diffusers-folder layout of the configs, the checkpoint at the top, and no staging left.
    assert (folder / "unet" / "config.json").is_file() and (folder / "tokenizer" / "vocab.json").is_file()
    assert not (env.AVATAR_MODELS_DIR / ".staging").exists()
    assert detect_family(folder) == "sd15" and detect_family(folder / "tiny.safetensors") == "sd15"
    assert f"AVATAR_BASE_MODEL={folder / 'tiny.safetensors'} AVATAR_BASE_CONFIG={folder}" in out
    assert hub.bytes_served == len(models.checkpoint) + sum(len(d) for d in models.configs.values())
    assert all(f"/{REPO}/resolve/{REVISION}/" in path for _, path, _ in hub.requests)


def test_the_list_shows_each_entry_with_its_licence_and_size(models: FakeModels) -> None:
    models.entries["tiny-lora"] = models.entry(kind="lora", title="Speed LoRA", commercial_use=False,
                                               files=[models.entry()["files"][0]])
    models.save()
    out = fetch("--list")
    assert "tiny " in out and "sd15" in out and "checkpoint" in out and "3.1 MB" in out
    assert "CreativeML OpenRAIL-M; commercial use: yes; suits: tests" in out
    assert "tiny-lora" in out and "commercial use: no" in out


def test_a_cut_connection_resumes_and_fetches_the_file_about_once(models: FakeModels, env: Settings,
                                                                  hub: HubServer) -> None:
    size = len(models.checkpoint)
    hub.cut_once(after=size // 2)

    fetch("tiny")

    assert_installed_and_verified(env.AVATAR_MODELS_DIR / "tiny", models)
    checkpoint_requests = [r for r in hub.requests if r[1].endswith("/tiny.safetensors")]
    assert len(checkpoint_requests) == 2
    assert checkpoint_requests[1][2] is not None and checkpoint_requests[1][2].startswith("bytes=")
    assert int(checkpoint_requests[1][2][len("bytes="):-1]) > 0
    configs = sum(len(d) for d in models.configs.values())
    assert size <= hub.bytes_served - configs < 1.5 * size


def test_a_download_that_keeps_failing_keeps_its_part_and_the_next_run_resumes(models: FakeModels, env: Settings,
                                                                               hub: HubServer) -> None:
    size = len(models.checkpoint)
    hub.cut_once(after=size // 3)
    hub.fail_after_cut = [503] * (download.RETRIES + 1)

    with pytest.raises(CommandError, match=r"answered HTTP 503 .* times.*kept in .*tiny\.safetensors\.part.*resume"):
        fetch("tiny")
    part = env.AVATAR_MODELS_DIR / ".staging" / "tiny" / "tiny.safetensors.part"
    assert part.stat().st_size == size // 3
    assert not (env.AVATAR_MODELS_DIR / "tiny").exists()

    served_before = hub.bytes_served
    fetch("tiny")
    assert_installed_and_verified(env.AVATAR_MODELS_DIR / "tiny", models)
    resumed = [r for r in hub.requests if r[1].endswith("/tiny.safetensors") and r[2]]
    assert resumed[-1][2] == f"bytes={size // 3}-"
    assert hub.bytes_served - served_before < size  # only the rest (and the small configs)
    assert not (env.AVATAR_MODELS_DIR / ".staging").exists()


def test_a_server_that_ignores_ranges_makes_the_file_start_over(models: FakeModels, env: Settings,
                                                                hub: HubServer) -> None:
    size = len(models.checkpoint)
    hub.cut_once(after=size // 4)
    hub.ignore_range = True

    out = fetch("tiny")

    assert "does not resume downloads: tiny.safetensors starts over" in out
    assert_installed_and_verified(env.AVATAR_MODELS_DIR / "tiny", models)


def test_a_wrong_checksum_is_refused_and_nothing_is_installed(models: FakeModels, env: Settings,
                                                              hub: HubServer) -> None:
    wrong = "0" * 64
    entry = models.entry()
    entry["files"][0]["sha256"] = wrong
    models.entries = {"tiny": entry}
    models.save()

    with pytest.raises(CommandError) as refused:
        fetch("tiny")

    message = str(refused.value)
    assert "tiny.safetensors of tiny failed its checksum" in message
    assert f"expected sha256 {wrong}, got {sha(models.checkpoint)}" in message
    assert "nothing was installed" in message
    assert left_behind(env.AVATAR_MODELS_DIR) == []  # no model folder, the bad .part removed


def test_a_wrong_size_is_refused_before_the_file_is_downloaded(models: FakeModels, env: Settings,
                                                               hub: HubServer) -> None:
    entry = models.entry()
    entry["files"][0]["size"] = len(models.checkpoint) + 1
    models.entries = {"tiny": entry}
    models.save()

    size = len(models.checkpoint)
    with pytest.raises(CommandError, match=rf"tiny.safetensors of tiny has the wrong size: expected "
                                           rf"{size + 1} bytes, the server has {size}"):
        fetch("tiny")
    assert hub.bytes_served < MB  # refused on the headers, not after the whole file
    assert left_behind(env.AVATAR_MODELS_DIR) == []


def test_a_second_run_with_everything_in_place_touches_no_network(models: FakeModels, env: Settings,
                                                                  hub: HubServer) -> None:
    fetch("tiny")
    requests = len(hub.requests)
    hub.stop()

    started = time.monotonic()
    out = fetch("tiny")
    assert time.monotonic() - started < 2
    assert "already installed" in out and "nothing downloaded" in out
    assert len(hub.requests) == requests
    out = fetch("tiny", "--verify")
    assert "every file re-read and verified" in out


def test_offline_mode_refuses_to_download_but_accepts_what_is_installed(models: FakeModels, env: Settings,
                                                                        hub: HubServer,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CommandError, match=r"HF_HUB_OFFLINE is set, so tiny cannot be downloaded"):
        fetch("tiny")
    assert hub.requests == [] and left_behind(env.AVATAR_MODELS_DIR) == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fetch("tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "already installed" in fetch("tiny")


def test_fetch_does_not_replace_a_model_imported_under_the_same_name(models: FakeModels, env: Settings,
                                                                     tmp_path: Path) -> None:
    source = write_checkpoint(tmp_path / "tiny.safetensors", SD15_KEYS)
    import_model(source)
    with pytest.raises(CommandError, match=rf"tiny holds another model \(imported from {source}\)"):
        fetch("tiny")
    assert (env.AVATAR_MODELS_DIR / "tiny" / "tiny.safetensors").read_bytes() == source.read_bytes()


def test_a_damaged_install_fetches_only_the_damaged_file_again(models: FakeModels, env: Settings,
                                                               hub: HubServer) -> None:
    fetch("tiny")
    vocab = env.AVATAR_MODELS_DIR / "tiny" / "tokenizer" / "vocab.json"
    vocab.write_bytes(b"{}")
    served = hub.bytes_served

    fetch("tiny")
    assert_installed_and_verified(env.AVATAR_MODELS_DIR / "tiny", models)
    assert hub.bytes_served - served == len(models.configs["tokenizer/vocab.json"])

    # A flipped byte keeps the size: only --verify, which re-reads every file, finds it.
    checkpoint = env.AVATAR_MODELS_DIR / "tiny" / "tiny.safetensors"
    with checkpoint.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00" if models.checkpoint[1000] else b"\x01")
    assert "already installed" in fetch("tiny")
    served = hub.bytes_served
    assert "installed tiny" in fetch("tiny", "--verify")
    assert_installed_and_verified(env.AVATAR_MODELS_DIR / "tiny", models)
    assert hub.bytes_served - served == len(models.checkpoint)


def test_an_unknown_name_lists_the_catalogue(models: FakeModels) -> None:
    with pytest.raises(CommandError, match=r"'sd99' is not in the model catalogue .*; its models are: tiny"):
        fetch("sd99")


def test_a_folder_not_made_by_fetch_model_is_not_overwritten(models: FakeModels, env: Settings) -> None:
    (env.AVATAR_MODELS_DIR / "tiny").mkdir(parents=True)
    (env.AVATAR_MODELS_DIR / "tiny" / "mine.txt").write_text("keep me")
    with pytest.raises(CommandError, match="was not installed by fetch_model or import_model"):
        fetch("tiny")
    assert (env.AVATAR_MODELS_DIR / "tiny" / "mine.txt").read_text() == "keep me"


def test_a_broken_catalogue_names_what_to_fix(models: FakeModels) -> None:
    entry = models.entry(revision="main")
    models.entries = {"tiny": entry}
    models.save()
    with pytest.raises(CommandError, match=r"\[models.tiny\], file tiny.safetensors: revision 'main' must be a "
                                           r"40-hex commit id"):
        fetch("tiny")


def test_no_network_answers_at_once_with_a_clear_message(models: FakeModels, env: Settings, tmp_path: Path) -> None:
    """A subprocess, as an operator runs it: a closed port, no traceback, an answer within seconds."""
    run_env = {**os.environ, "HF_ENDPOINT": closed_port_endpoint(), "AVATAR_MODELS_DIR": str(tmp_path / "models"),
               "AVATAR_MODEL_CATALOGUE": str(env.AVATAR_MODEL_CATALOGUE), "AVATAR_DOWNLOAD_TIMEOUT": "2"}
    run_env.pop("HF_HUB_OFFLINE", None)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "manage.py", "fetch_model", "tiny"], cwd=ROOT, env=run_env,
                            capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:" in result.stderr and "HF_ENDPOINT" in result.stderr
    assert "import_model" in result.stderr and "Traceback" not in result.stderr
    assert elapsed < 15  # mostly Django's start-up; the refusal itself is immediate
    assert left_behind(tmp_path / "models") == []


def test_a_server_that_never_answers_times_out_with_a_clear_message(models: FakeModels, env: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    silent = SilentServer()
    monkeypatch.setenv("HF_ENDPOINT", silent.endpoint)
    env.AVATAR_DOWNLOAD_TIMEOUT = 1.0
    try:
        started = time.monotonic()
        with pytest.raises(CommandError, match=r"no answer from http://127.0.0.1:\d+ within 1 s "
                                               r"\(AVATAR_DOWNLOAD_TIMEOUT\)"):
            fetch("tiny")
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    assert left_behind(env.AVATAR_MODELS_DIR) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs as the models folder."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_refused_up_front_with_nothing_installed(models: FakeModels, env: Settings, hub: HubServer,
                                                                tiny_disk: Path) -> None:
    env.AVATAR_MODELS_DIR = tiny_disk
    with pytest.raises(CommandError, match=rf"not enough free space for tiny .* in {tiny_disk}: 3.1 MB still to "
                                           rf"write plus a 100.0 MB margin, but only 1.0 MB is free"):
        fetch("tiny")
    assert hub.bytes_served == 0
    assert left_behind(tiny_disk) == []


def test_a_disk_that_fills_up_while_writing_leaves_nothing_installed(models: FakeModels, env: Settings,
                                                                     hub: HubServer, tiny_disk: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    env.AVATAR_MODELS_DIR = tiny_disk
    monkeypatch.setattr(store, "free_space", lambda folder: 10**12)  # a disk that claims room, then fills up
    with pytest.raises(CommandError, match=rf"no space left on the disk of {tiny_disk} while writing "
                                           r"tiny.safetensors; nothing was installed"):
        fetch("tiny")
    assert left_behind(tiny_disk) == []


# --- import_model ------------------------------------------------------------------------

def diffusers_folder(path: Path, *, class_name: str = "StableDiffusionPipeline", cross_attention_dim: int = 768,
                     extra: dict[str, bytes] | None = None) -> Path:
    """A diffusers-layout folder: model_index.json, configs and small .safetensors weights."""
    index = {"_class_name": class_name, "_diffusers_version": "0.42.1",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None]}
    path.mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps(index))
    for component, config in (("unet", {"cross_attention_dim": cross_attention_dim, "in_channels": 4}),
                              ("vae", {"latent_channels": 4}), ("text_encoder", {"hidden_size": 768})):
        (path / component).mkdir()
        (path / component / "config.json").write_text(json.dumps(config))
    write_checkpoint(path / "unet" / "diffusion_pytorch_model.safetensors", ["conv_in.weight", "conv_out.weight"])
    write_checkpoint(path / "vae" / "diffusion_pytorch_model.safetensors", ["encoder.conv_in.weight"])
    write_checkpoint(path / "text_encoder" / "model.safetensors", ["text_model.final_layer_norm.weight"])
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "vocab.json").write_text(json.dumps({"a": 0}))
    (path / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    (path / "scheduler").mkdir()
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler"}))
    for name, data in (extra or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def import_model(*args: str | Path) -> str:
    out = io.StringIO()
    call_command("import_model", *[str(a) for a in args], "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_importing_a_diffusers_folder_installs_it_with_its_record(env: Settings, tmp_path: Path) -> None:
    source = diffusers_folder(tmp_path / "my-sd15", extra={"unet/diffusion_pytorch_model.bin": b"pickle"})

    out = import_model(source)

    folder = env.AVATAR_MODELS_DIR / "my-sd15"
    assert "installed my-sd15 (sd15, diffusers)" in out and f"AVATAR_BASE_MODEL={folder}" in out
    assert "left out 1 pickle-format files" in out
    record = json.loads((folder / "chhavi_model.json").read_text())
    assert record["family"] == "sd15" and record["kind"] == "diffusers"
    assert record["source"] == {"kind": "import", "path": str(source)}
    assert not (folder / "unet" / "diffusion_pytorch_model.bin").exists()
    assert {f["path"] for f in record["files"]} == {
        str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() and p.suffix != ".bin"}
    for file in record["files"]:
        assert sha((source / file["path"]).read_bytes()) == file["sha256"] == sha((folder / file["path"]).read_bytes())
    assert detect_family(folder) == "sd15"
    assert not (env.AVATAR_MODELS_DIR / ".staging").exists()
    # Importing the same folder again under the same name is a no-op, not an error.
    assert "already installed" in import_model(source)


def test_an_sdxl_diffusers_folder_is_sdxl(env: Settings, tmp_path: Path) -> None:
    source = diffusers_folder(tmp_path / "xl", class_name="StableDiffusionXLPipeline", cross_attention_dim=2048)
    import_model(source, "--name", "my-xl")
    assert json.loads((env.AVATAR_MODELS_DIR / "my-xl" / "chhavi_family.json").read_text()) == {"family": "sdxl"}


@pytest.mark.parametrize("keys, family", [(SD15_KEYS, "sd15"), (SDXL_KEYS, "sdxl")])
def test_importing_a_checkpoint_detects_its_family(env: Settings, tmp_path: Path, keys: list[str], family: str) -> None:
    source = write_checkpoint(tmp_path / "realistic Vision v6.safetensors", keys)

    out = import_model(source)

    folder = env.AVATAR_MODELS_DIR / "realistic-Vision-v6"
    assert f"installed realistic-Vision-v6 ({family}, checkpoint)" in out
    assert (folder / source.name).read_bytes() == source.read_bytes()
    record = json.loads((folder / "chhavi_model.json").read_text())
    assert record["family"] == family and record["checkpoint"] == source.name
    assert record["files"] == [{"path": source.name, "size": source.stat().st_size,
                                "sha256": sha(source.read_bytes())}]
    assert json.loads((folder / "chhavi_family.json").read_text()) == {"family": family}
    assert f"AVATAR_BASE_MODEL={folder / source.name}" in out


@pytest.mark.parametrize("keys, family", [(SD15_KEYS, "sd15"), (SDXL_KEYS, "sdxl")])
def test_a_lone_checkpoint_gets_chhavis_pipeline_configs_and_the_worker_finds_it_by_name(
        env: Settings, tmp_path: Path, keys: list[str], family: str) -> None:
    """No hub is needed to load it: the configs are written beside it, and AVATAR_BASE_MODEL may be its name."""
    from avatarapp.modelstore.pipeline_configs import expected_sha256
    from worker.engine import check_base_model, locate_model

    source = write_checkpoint(tmp_path / "mine.safetensors", keys)
    import_model(source, "--name", "mine")
    folder = env.AVATAR_MODELS_DIR / "mine"
    for relative, digest in expected_sha256(family).items():
        assert sha((folder / relative).read_bytes()) == digest, relative
    assert locate_model("mine") == (folder / "mine.safetensors", str(folder))
    assert locate_model(str(folder)) == (folder / "mine.safetensors", str(folder))
    assert check_base_model("mine") == folder / "mine.safetensors"


@pytest.mark.parametrize("keys, found", [
    (["cond_stage_model.model.ln_final.weight", "model.diffusion_model.input_blocks.0.0.weight"],
     "Stable Diffusion 2.x"),
    (["double_blocks.0.img_attn.norm.key_norm.scale", "single_blocks.0.linear1.weight"], "Flux"),
    (["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight",
      "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"], "Stable Diffusion 3"),
    (["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"], "is a LoRA, not a base model"),
    (["encoder.conv_in.weight", "decoder.conv_out.weight"], "found 2 tensors, for example decoder.conv_out.weight"),
])
def test_an_unsupported_checkpoint_is_refused_naming_what_it_is(env: Settings, tmp_path: Path, keys: list[str],
                                                                found: str) -> None:
    source = write_checkpoint(tmp_path / "other.safetensors", keys)
    with pytest.raises(CommandError, match=found):
        import_model(source)
    assert left_behind(env.AVATAR_MODELS_DIR) == []


def test_a_folder_that_is_not_a_model_is_refused_with_nothing_left_behind(env: Settings, tmp_path: Path) -> None:
    source = tmp_path / "holiday-photos"
    source.mkdir()
    (source / "beach.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(CommandError, match=r"holiday-photos is not a model: it has no model_index.json"):
        import_model(source)
    assert left_behind(env.AVATAR_MODELS_DIR) == []


@pytest.mark.parametrize("change, message", [
    ({"cross_attention_dim": 1024}, r"Stable Diffusion 2.x model \(its UNet's cross_attention_dim is 1024\)"),
    ({"class_name": "StableDiffusion3Pipeline"}, r"names the pipeline 'StableDiffusion3Pipeline'"),
    ({"class_name": "FluxPipeline"}, r"names the pipeline 'FluxPipeline'"),
])
def test_an_unsupported_diffusers_folder_is_refused(env: Settings, tmp_path: Path, change: dict[str, Any],
                                                    message: str) -> None:
    source = diffusers_folder(tmp_path / "other", **change)
    with pytest.raises(CommandError, match=message):
        import_model(source)
    assert left_behind(env.AVATAR_MODELS_DIR) == []


def test_a_truncated_weight_in_a_folder_is_refused(env: Settings, tmp_path: Path) -> None:
    source = diffusers_folder(tmp_path / "cut")
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CommandError, match=r"diffusion_pytorch_model.safetensors is truncated"):
        import_model(source)
    assert left_behind(env.AVATAR_MODELS_DIR) == []


def test_a_folder_with_only_pickle_weights_is_refused(env: Settings, tmp_path: Path) -> None:
    source = diffusers_folder(tmp_path / "old")
    (source / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (source / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CommandError, match=r"unet has no .safetensors weights \(only unet/diffusion_pytorch_model.bin"):
        import_model(source)
    assert left_behind(env.AVATAR_MODELS_DIR) == []


# --- export_bundle and import_model of a bundle ----------------------------------------------

def write_pack(packs_dir: Path, slug: str, family: str) -> Path:
    folder = packs_dir / slug
    folder.mkdir(parents=True)
    (folder / "pack.toml").write_text(
        f'slug = "{slug}"\nversion = "1.0.0"\nbase_family = "{family}"\nprompt = "{{subject}}, {slug} style"\n'
        f'[names]\nen = "{slug.title()}"\n[[lora]]\nfile = "{slug}.safetensors"\nweight = 0.8\n')
    write_checkpoint(folder / f"{slug}.safetensors", ["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"])
    return folder


@pytest.fixture
def exported(env: Settings, tmp_path: Path, models: FakeModels) -> tuple[Path, str]:
    """An sd15 model fetched on the 'connected machine', with two packs, exported with --packs."""
    fetch("tiny")
    write_pack(env.AVATAR_PACKS_DIR, "retro", "sd15")
    write_pack(env.AVATAR_PACKS_DIR, "glossy", "sdxl")
    bundle = tmp_path / "carry" / "chhavi-tiny.tar"
    out = io.StringIO()
    call_command("export_bundle", "tiny", str(bundle), "--packs", "--no-progress", stdout=out)
    return bundle, out.getvalue()


@pytest.fixture
def air_gapped(env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh models folder and packs folder, and no network at all."""
    env.AVATAR_MODELS_DIR = tmp_path / "site" / "models"
    env.AVATAR_PACKS_DIR = tmp_path / "site" / "packs"
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    return env


def test_export_then_import_carries_the_model_and_its_packs(db: None, exported: tuple[Path, str],
                                                            air_gapped: Settings, models: FakeModels) -> None:
    from avatarapp.packs.models import StylePack

    bundle, out = exported
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == "bundle.json"
    assert "model/tiny.safetensors" in names and "model/unet/config.json" in names
    assert "packs/retro/pack.toml" in names and "packs/retro/retro.safetensors" in names
    assert not any(n.startswith("packs/glossy") for n in names)  # an sdxl pack does not fit an sd15 model
    bundle_sha = sha(bundle.read_bytes())
    assert f"sha256 {bundle_sha}" in out and "packs: retro" in out

    result = import_model(bundle, "--sha256", bundle_sha)

    folder = air_gapped.AVATAR_MODELS_DIR / "tiny"
    record = assert_installed_and_verified(folder, models)
    assert record["source"]["kind"] == "bundle" and record["source"]["original"]["repo"] == REPO
    assert record["family"] == "sd15" and record["checkpoint"] == "tiny.safetensors"
    assert "packs installed and registered: retro" in result
    assert sorted(p.name for p in air_gapped.AVATAR_PACKS_DIR.iterdir()) == ["retro"]
    pack = StylePack.objects.get(slug="retro")
    assert pack.enabled and pack.base_family == "sd15"
    assert not (air_gapped.AVATAR_MODELS_DIR / ".staging").exists()
    # Importing it again changes nothing and says so.
    assert "already installed" in import_model(bundle)


def rewrite_bundle(source: Path, dest: Path, *, edit: Callable[[str, bytes], bytes] | None = None,
                   manifest_edit: Callable[[dict[str, Any]], None] | None = None,
                   extra: Sequence[tarfile.TarInfo] = ()) -> Path:
    """Copy a bundle, changing member bytes (``edit(name, data) -> data``) or the manifest."""
    with tarfile.open(source) as tar:
        members = [(m, member_bytes(tar, m)) for m in tar.getmembers()]
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            if member.name == "bundle.json" and manifest_edit:
                manifest = json.loads(data)
                manifest_edit(manifest)
                data = json.dumps(manifest).encode()
            elif edit:
                data = edit(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        for member in extra:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return dest


def flip_one_byte_in_place(bundle: Path, member_name: str) -> None:
    with tarfile.open(bundle) as tar:
        offset = tar.getmember(member_name).offset_data + 12345
    with bundle.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def assert_nothing_installed(site: Settings) -> None:
    assert left_behind(site.AVATAR_MODELS_DIR) == []
    assert not site.AVATAR_PACKS_DIR.exists() or left_behind(site.AVATAR_PACKS_DIR) == []


def test_a_bundle_with_one_byte_changed_in_a_weight_is_refused(db: None, exported: tuple[Path, str],
                                                               air_gapped: Settings) -> None:
    bundle, _ = exported
    flip_one_byte_in_place(bundle, "model/tiny.safetensors")
    with pytest.raises(CommandError, match=r"model/tiny.safetensors failed its checksum: expected sha256 [0-9a-f]{64}, "
                                           r"got [0-9a-f]{64}; the bundle was altered or damaged, nothing was "
                                           r"installed"):
        import_model(bundle)
    assert_nothing_installed(air_gapped)


def test_a_bundle_whose_manifest_was_edited_is_refused(db: None, exported: tuple[Path, str], air_gapped: Settings,
                                                       tmp_path: Path) -> None:
    bundle, _ = exported
    forged = "f" * 64

    def forge(manifest: dict) -> None:  # a consistent edit: the record and the file list agree
        for file in manifest["files"] + manifest["model"]["files"]:
            if file["path"].endswith("vocab.json"):
                file["sha256"] = forged

    edited = rewrite_bundle(bundle, tmp_path / "edited.tar", manifest_edit=forge)
    with pytest.raises(CommandError, match=r"differ from the catalogue entry tiny .* for tokenizer/vocab.json: "
                                           r"the bundle was altered"):
        import_model(edited)
    assert_nothing_installed(air_gapped)

    air_gapped.AVATAR_MODEL_CATALOGUE = tmp_path / "no-catalogue.toml"  # without the catalogue to compare
    with pytest.raises(CommandError, match=r"model/tokenizer/vocab.json failed its checksum: expected sha256 "
                                           rf"{forged}"):
        import_model(edited)
    assert_nothing_installed(air_gapped)

    half = rewrite_bundle(bundle, tmp_path / "half.tar", manifest_edit=lambda m: m["files"][0].update(size=1))
    with pytest.raises(CommandError, match=r"bundle.json is inconsistent"):
        import_model(half)
    assert_nothing_installed(air_gapped)


def test_a_pack_of_another_family_in_a_bundle_is_refused(db: None, exported: tuple[Path, str], air_gapped: Settings,
                                                         tmp_path: Path) -> None:
    bundle, _ = exported

    def sdxl_pack(manifest: dict) -> None:
        manifest["packs"][0]["base_family"] = "sdxl"

    with pytest.raises(CommandError, match=r"the pack retro is made for 'sdxl' models but the bundle's model tiny is "
                                           r"sd15; nothing was installed"):
        import_model(rewrite_bundle(bundle, tmp_path / "a.tar", manifest_edit=sdxl_pack))
    assert_nothing_installed(air_gapped)

    # The pack's own pack.toml changed to sdxl, with a manifest that matches its bytes.
    def retarget(name: str, data: bytes) -> bytes:
        return data.replace(b'base_family = "sd15"', b'base_family = "sdxl"') if name.endswith("pack.toml") else data

    def rehash(manifest: dict) -> None:
        for pack in manifest["packs"]:
            for file in pack["files"]:
                if file["path"].endswith("pack.toml"):
                    data = retarget(file["path"], (bundle_member(bundle, file["path"])))
                    file.update(size=len(data), sha256=sha(data))

    with pytest.raises(CommandError, match=r"holds the pack retro for sdxl models, but the bundle's model is sd15"):
        import_model(rewrite_bundle(bundle, tmp_path / "b.tar", edit=retarget, manifest_edit=rehash))
    assert_nothing_installed(air_gapped)


def member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo | str) -> bytes:
    stream = tar.extractfile(member)
    assert stream is not None
    return stream.read()


def bundle_member(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle) as tar:
        return member_bytes(tar, name)


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize("member, message", [
    (_member("../evil.txt"), r"refused member '../evil.txt'"),
    (_member("/etc/evil.txt"), r"refused member '/etc/evil.txt'"),
    (_member("model/link", tarfile.SYMTYPE, link="/etc/passwd"), r"refused member 'model/link'"),
    (_member("model/fifo", tarfile.FIFOTYPE), r"refused member 'model/fifo' \('model/fifo' is a special file\)"),
    (_member("model/extra.txt"), r"member 'model/extra.txt' is not listed in bundle.json"),
])
def test_a_bundle_with_a_hostile_member_is_refused(db: None, exported: tuple[Path, str], air_gapped: Settings,
                                                   tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    bundle, _ = exported
    hostile = rewrite_bundle(bundle, tmp_path / "hostile.tar", extra=[member])
    with pytest.raises(CommandError, match=message):
        import_model(hostile)
    assert_nothing_installed(air_gapped)
    assert not (tmp_path / "evil.txt").exists()


def test_a_bundle_missing_a_member_is_refused(db: None, exported: tuple[Path, str], air_gapped: Settings,
                                              tmp_path: Path) -> None:
    bundle, _ = exported
    with tarfile.open(bundle) as tar:
        members = [(m, member_bytes(tar, m)) for m in tar.getmembers() if m.name != "model/unet/config.json"]
    short = tmp_path / "short.tar"
    with tarfile.open(short, "w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(CommandError, match=r"1 files listed in bundle.json are missing \(for example "
                                           r"model/unet/config.json\)"):
        import_model(short)
    assert_nothing_installed(air_gapped)


def test_exporting_a_model_that_is_not_installed_names_the_installed_ones(models: FakeModels, env: Settings,
                                                                          tmp_path: Path) -> None:
    fetch("tiny")
    with pytest.raises(CommandError, match=r"sd15 is not a model installed .*; installed: tiny"):
        call_command("export_bundle", "sd15", str(tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()


def test_the_bundled_catalogue_loads(settings: Settings) -> None:
    entries = load_catalogue(Path(settings.BASE_DIR) / "avatarapp" / "modelstore" / "catalogue.toml")
    assert entries and all(e.revision and e.files for e in entries.values())
    for entry in entries.values():
        assert entry.family in ("sd15", "sdxl") and entry.kind in ("diffusers", "checkpoint", "lora", "ip_adapter")


def test_detect_family_refuses_a_folder_with_an_unknown_marker(tmp_path: Path) -> None:
    (tmp_path / "chhavi_family.json").write_text(json.dumps({"family": "sd3"}))
    with pytest.raises(ModelStoreError, match=r"names the family 'sd3'"):
        detect_family(tmp_path)


# --- identity adapters (kind "ip_adapter") -----------------------------------------------------

def add_identity_adapter(models: FakeModels, hub: HubServer) -> dict[str, bytes]:
    """An ip_adapter entry on the fake hub, laid out as h94/IP-Adapter is (weights saved under new names)."""
    files = {"models/ip-adapter-plus-face_sd15.safetensors": fake_safetensors(["image_proj.latents"], 4096, 1),
             "models/image_encoder/model.safetensors": fake_safetensors(["vision_model.post_layernorm.weight"],
                                                                          8192, 2)}
    for path, data in files.items():
        hub.add(REPO, REVISION, path, data)
    save_as = {"models/ip-adapter-plus-face_sd15.safetensors": "ip_adapter.safetensors",
               "models/image_encoder/model.safetensors": "image_encoder/model.safetensors"}
    models.entries["face-sd15"] = models.entry(
        kind="ip_adapter", title="IP-Adapter Plus Face", licence="Apache-2.0",
        files=[{"path": path, "save_as": save_as[path], "size": len(data), "sha256": sha(data)}
               for path, data in files.items()])
    models.save()
    return files


def test_an_identity_adapter_is_fetched_into_the_layout_the_worker_loads(models: FakeModels, env: Settings,
                                                                          hub: HubServer) -> None:
    from avatarapp.modelstore.identity import VIT_H_CONFIG, identity_adapter_problem

    files = add_identity_adapter(models, hub)
    out = fetch("face-sd15")
    folder = env.AVATAR_MODELS_DIR / "face-sd15"
    assert (folder / "ip_adapter.safetensors").read_bytes() == files["models/ip-adapter-plus-face_sd15.safetensors"]
    assert (folder / "image_encoder" / "model.safetensors").read_bytes() == files[
        "models/image_encoder/model.safetensors"]
    # The encoder's config is Chhavi's own ViT-H-14 one; the record lists only what was downloaded and verified.
    assert (folder / "image_encoder" / "config.json").read_bytes() == VIT_H_CONFIG.read_bytes()
    record = json.loads((folder / "chhavi_model.json").read_text())
    assert record["kind"] == "ip_adapter" and record["licence"] == "Apache-2.0"
    assert {f["path"] for f in record["files"]} == {"ip_adapter.safetensors", "image_encoder/model.safetensors"}
    assert "set AVATAR_IDENTITY_ADAPTER=face-sd15" in out
    assert identity_adapter_problem("face-sd15", env.AVATAR_MODELS_DIR) == ""
    # A second run finds it installed and touches nothing.
    served = hub.bytes_served
    fetch("face-sd15")
    assert hub.bytes_served == served


def test_an_identity_adapter_entry_must_save_its_files_where_the_worker_looks(models: FakeModels,
                                                                               hub: HubServer) -> None:
    add_identity_adapter(models, hub)
    for file in models.entries["face-sd15"]["files"]:
        file.pop("save_as")
    models.save()
    with pytest.raises(CommandError, match=r"an ip_adapter entry saves its weights as ip_adapter\.safetensors"):
        fetch("face-sd15")


def test_the_bundled_identity_adapters_are_clip_based_and_commercially_usable(settings: Settings) -> None:
    entries = load_catalogue(Path(settings.BASE_DIR) / "avatarapp" / "modelstore" / "catalogue.toml")
    adapters = {name: e for name, e in entries.items() if e.kind == "ip_adapter"}
    assert set(adapters) == {"ip-adapter-plus-face-sd15", "ip-adapter-plus-face-sdxl"}
    for entry in adapters.values():
        assert entry.commercial_use and "Apache-2.0" in entry.licence
        assert not any("faceid" in f.path.lower() or "insightface" in f.path.lower() for f in entry.files)
        assert {f.save_as for f in entry.files} == {"ip_adapter.safetensors", "image_encoder/model.safetensors"}
