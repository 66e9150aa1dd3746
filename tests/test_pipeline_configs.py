"""The config folder ``from_single_file(checkpoint, config=folder)`` needs, written offline by Chhavi.

The figures below are public ones, not read back from the package under test: the sizes the
Hugging Face hub shows for each file of stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0
(exact under 1 kB), the SHA-256s of its CLIP tokenizer files, the real CLIP token ids, and the
parameter counts of the real models.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avatarapp.modelstore import pipeline_configs
from avatarapp.modelstore.errors import ModelStoreError
from avatarapp.modelstore.pipeline_configs import derive_clip_tokenizer_files, write_pipeline_configs

ROOT = Path(__file__).resolve().parent.parent

# The hub's CLIP ViT-L/14 tokenizer files (SD 1.5 tokenizer/, SDXL tokenizer/ and tokenizer_2/).
HUB_VOCAB = (1059962, "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349")
HUB_MERGES = (524619, "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a")

# Every file of the folder, with the byte size the hub's tree pages show for it.
HUB_SIZES = {
    "sd15": {
        "model_index.json": 541,
        "feature_extractor/preprocessor_config.json": 342,
        "scheduler/scheduler_config.json": 308,
        "text_encoder/config.json": 617,
        "tokenizer/merges.txt": HUB_MERGES[0],
        "tokenizer/special_tokens_map.json": 472,
        "tokenizer/tokenizer_config.json": 806,
        "tokenizer/vocab.json": HUB_VOCAB[0],
        "unet/config.json": 743,
        "vae/config.json": 547,
    },
    "sdxl": {
        "model_index.json": 609,
        "scheduler/scheduler_config.json": 479,
        "text_encoder/config.json": 565,
        "text_encoder_2/config.json": 575,
        "tokenizer/merges.txt": HUB_MERGES[0],
        "tokenizer/special_tokens_map.json": 472,
        "tokenizer/tokenizer_config.json": 737,
        "tokenizer/vocab.json": HUB_VOCAB[0],
        "tokenizer_2/merges.txt": HUB_MERGES[0],
        "tokenizer_2/special_tokens_map.json": 460,
        "tokenizer_2/tokenizer_config.json": 725,
        "tokenizer_2/vocab.json": HUB_VOCAB[0],
        "unet/config.json": 1680,  # the hub shows "1.68 kB"
        "vae/config.json": 642,
    },
}

# "a portrait of a person" in CLIP's own ids.
PORTRAIT_IDS = [49406, 320, 5352, 539, 320, 2533, 49407]

# (family, component, class, parameters of the real model)
PARAMETER_COUNTS = [
    ("sd15", "unet", "UNet2DConditionModel", 859_520_964),
    ("sd15", "vae", "AutoencoderKL", 83_653_863),
    ("sd15", "text_encoder", "CLIPTextModel", 123_060_480),
    ("sdxl", "unet", "UNet2DConditionModel", 2_567_463_684),
    ("sdxl", "vae", "AutoencoderKL", 83_653_863),
    ("sdxl", "text_encoder", "CLIPTextModel", 123_060_480),
    ("sdxl", "text_encoder_2", "CLIPTextModelWithProjection", 694_659_840),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline-configs")
    for family in ("sd15", "sdxl"):
        write_pipeline_configs(family, root / family)
    return {family: root / family for family in ("sd15", "sdxl")}


def test_the_vendored_bpe_file_is_openai_clips_with_its_licence() -> None:
    gz = ROOT / "avatarapp" / "modelstore" / "pipeline_configs" / "bpe_simple_vocab_16e6.txt.gz"
    assert gz.stat().st_size == 1356917
    assert sha256(gz) == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    lines = gzip.decompress(gz.read_bytes()).decode("utf-8").split("\n")
    assert lines[1:3] == ["i n", "t h"]
    licence = (gz.parent / "LICENSE-CLIP.txt").read_text()
    assert "MIT License" in licence and "Copyright (c) 2021 OpenAI" in licence


def test_the_derived_tokenizer_files_are_byte_for_byte_the_hubs() -> None:
    files = derive_clip_tokenizer_files()
    for name, (size, digest) in (("vocab.json", HUB_VOCAB), ("merges.txt", HUB_MERGES)):
        assert len(files[name]) == size, name
        assert hashlib.sha256(files[name]).hexdigest() == digest, name
    vocab = json.loads(files["vocab.json"])
    assert len(vocab) == 49408
    assert (vocab["!"], vocab["a</w>"], vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (0, 320, 49406, 49407)
    merges = files["merges.txt"].decode("utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_folder_has_every_file_at_the_hubs_size_and_checks_what_it_wrote(
        folders: dict[str, Path], family: str) -> None:
    folder = folders[family]
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert found == sorted(HUB_SIZES[family])
    for rel, size in HUB_SIZES[family].items():
        assert (folder / rel).stat().st_size == size, rel
        assert sha256(folder / rel) == pipeline_configs.expected_sha256(family)[rel], rel
        assert not rel.endswith(".json") or json.loads((folder / rel).read_text(encoding="utf-8")) is not None
    for tokenizer in pipeline_configs.TOKENIZER_FOLDERS[family]:
        assert sha256(folder / tokenizer / "vocab.json") == HUB_VOCAB[1]
        assert sha256(folder / tokenizer / "merges.txt") == HUB_MERGES[1]


def test_writing_again_returns_the_same_files_and_leaves_others_alone(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    first = write_pipeline_configs("sdxl", folder)
    (folder / "unet" / "config.json").write_text("{}")
    second = write_pipeline_configs("sdxl", folder)
    assert first == second == sorted(first)
    assert len(first) == len(HUB_SIZES["sdxl"])
    assert sha256(folder / "unet" / "config.json") == sha256(folders["sdxl"] / "unet" / "config.json")
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    assert not [p for p in folder.rglob("*.tmp")]


def test_an_unknown_family_or_a_changed_data_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelStoreError, match="no pipeline configs for family 'demo'"):
        write_pipeline_configs("demo", tmp_path / "demo")
    copy = tmp_path / "data"
    shutil.copytree(pipeline_configs.DATA_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    unet = copy / "sd15" / "unet" / "config.json"
    unet.write_text(unet.read_text().replace('"sample_size": 64', '"sample_size": 32'))
    monkeypatch.setattr(pipeline_configs, "DATA_DIR", copy)
    with pytest.raises(ModelStoreError, match="has been changed"):
        write_pipeline_configs("sd15", tmp_path / "sd15")
    assert not (tmp_path / "sd15").exists()


def test_a_damaged_bpe_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    data = bytearray(pipeline_configs.BPE_VOCAB_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(pipeline_configs, "BPE_VOCAB_FILE", damaged)
    pipeline_configs.derive_clip_tokenizer_files.cache_clear()
    try:
        with pytest.raises(ModelStoreError, match="is not OpenAI CLIP's BPE vocabulary"):
            derive_clip_tokenizer_files()
    finally:
        pipeline_configs.derive_clip_tokenizer_files.cache_clear()


def test_the_web_side_writes_the_folder_without_torch(tmp_path: Path) -> None:
    probe = (
        "import sys\nfrom pathlib import Path\n"
        "from avatarapp.modelstore.pipeline_configs import write_pipeline_configs\n"
        f"n = len(write_pipeline_configs('sdxl', Path({str(tmp_path)!r})))\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "print(n, 'HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(len(HUB_SIZES["sdxl"])), "HEAVY="]


# ---- With the ML stack (the worker's side): the folder is what transformers and diffusers expect. ----


@pytest.mark.parametrize(("family", "subfolder", "pad"), [
    ("sd15", "tokenizer", "<|endoftext|>"), ("sdxl", "tokenizer", "<|endoftext|>"), ("sdxl", "tokenizer_2", "!"),
])
def test_the_tokenizers_load_and_give_clips_ids(
        folders: dict[str, Path], family: str, subfolder: str, pad: str) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folders[family], subfolder=subfolder, local_files_only=True)
    assert tokenizer("a portrait of a person").input_ids == PORTRAIT_IDS
    assert tokenizer.model_max_length == 77
    assert tokenizer.pad_token == pad
    padded = tokenizer("a portrait of a person", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[7:] == [tokenizer.convert_tokens_to_ids(pad)] * 70


def test_the_configs_load_with_diffusers_and_transformers(folders: dict[str, Path]) -> None:
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    sd15, sdxl = folders["sd15"], folders["sdxl"]

    unet = diffusers.UNet2DConditionModel.load_config(sd15, subfolder="unet")
    assert unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert (unet["cross_attention_dim"], unet["attention_head_dim"], unet["sample_size"]) == (768, 8, 64)
    scheduler = diffusers.PNDMScheduler.from_pretrained(sd15, subfolder="scheduler")
    assert (scheduler.config.beta_schedule, scheduler.config.beta_start, scheduler.config.beta_end) == (
        "scaled_linear", 0.00085, 0.012)
    assert scheduler.config.skip_prk_steps is True and scheduler.config.clip_sample is False
    assert scheduler.config.steps_offset == 1
    vae = diffusers.AutoencoderKL.from_config(diffusers.AutoencoderKL.load_config(sd15, subfolder="vae"))
    assert (vae.config.scaling_factor, vae.config.sample_size) == (0.18215, 512)
    text = transformers.CLIPTextConfig.from_pretrained(sd15, subfolder="text_encoder")
    assert (text.hidden_size, text.num_hidden_layers, text.hidden_act) == (768, 12, "quick_gelu")
    assert (text.vocab_size, text.max_position_embeddings) == (49408, 77)
    assert transformers.CLIPImageProcessor.from_pretrained(sd15, subfolder="feature_extractor").crop_size == {
        "height": 224, "width": 224}

    unet = diffusers.UNet2DConditionModel.load_config(sdxl, subfolder="unet")
    assert unet["transformer_layers_per_block"] == [1, 2, 10] and unet["attention_head_dim"] == [5, 10, 20]
    assert (unet["addition_embed_type"], unet["projection_class_embeddings_input_dim"], unet["cross_attention_dim"],
            unet["use_linear_projection"], unet["sample_size"]) == ("text_time", 2816, 2048, True, 128)
    scheduler = diffusers.EulerDiscreteScheduler.from_pretrained(sdxl, subfolder="scheduler")
    assert (scheduler.config.timestep_spacing, scheduler.config.steps_offset, scheduler.config.prediction_type) == (
        "leading", 1, "epsilon")
    vae = diffusers.AutoencoderKL.load_config(sdxl, subfolder="vae")
    assert (vae["scaling_factor"], vae["sample_size"], vae["force_upcast"]) == (0.13025, 1024, True)
    text_2 = transformers.CLIPTextConfig.from_pretrained(sdxl, subfolder="text_encoder_2")
    assert (text_2.hidden_size, text_2.num_hidden_layers, text_2.num_attention_heads, text_2.intermediate_size,
            text_2.projection_dim, text_2.hidden_act) == (1280, 32, 20, 5120, 1280, "gelu")


def test_the_sdxl_pipeline_reads_the_folder(folders: dict[str, Path]) -> None:
    diffusers = pytest.importorskip("diffusers")
    config = diffusers.StableDiffusionXLImg2ImgPipeline.load_config(folders["sdxl"])
    assert config["_class_name"] == "StableDiffusionXLPipeline"
    assert config["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert config["force_zeros_for_empty_prompt"] is True


def build_on_meta(folder: Path, component: str, class_name: str) -> Any:
    """The component, built from its config alone with no memory for its weights."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        if class_name in ("UNet2DConditionModel", "AutoencoderKL"):
            cls = getattr(diffusers, class_name)
            return cls.from_config(cls.load_config(folder, subfolder=component))
        config = transformers.CLIPTextConfig.from_pretrained(folder, subfolder=component)
        return getattr(transformers, class_name)(config)


@pytest.mark.parametrize(("family", "component", "class_name", "count"), PARAMETER_COUNTS,
                         ids=[f"{f}-{c}" for f, c, _, _ in PARAMETER_COUNTS])
def test_the_models_built_from_the_configs_have_the_real_parameter_counts(
        folders: dict[str, Path], family: str, component: str, class_name: str, count: int) -> None:
    model = build_on_meta(folders[family], component, class_name)
    assert type(model).__name__ == class_name
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_from_single_file_builds_the_pipeline_from_the_folder_alone(
        folders: dict[str, Path], family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The img2img pipeline from a checkpoint and the folder, offline: the weight-bearing components are
    handed in (built on the meta device from the folder's configs), the tokenizers, scheduler and
    feature extractor come from the folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    checkpoint = tmp_path / "model.safetensors"
    safetensors_torch.save_file({"placeholder": torch.zeros(1)}, str(checkpoint))
    folder = folders[family]
    components = {name: build_on_meta(folder, name, cls) for fam, name, cls, _ in PARAMETER_COUNTS if fam == family}
    cls = diffusers.StableDiffusionImg2ImgPipeline if family == "sd15" else diffusers.StableDiffusionXLImg2ImgPipeline
    pipe = cls.from_single_file(str(checkpoint), config=str(folder), local_files_only=True, **components)
    assert type(pipe.scheduler).__name__ == ("PNDMScheduler" if family == "sd15" else "EulerDiscreteScheduler")
    assert pipe.tokenizer("a portrait of a person").input_ids == PORTRAIT_IDS
    assert pipe.vae_scale_factor == 8
    if family == "sd15":
        assert pipe.feature_extractor is not None and pipe.safety_checker is None
    else:
        assert pipe.tokenizer_2.pad_token == "!"
