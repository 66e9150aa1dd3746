"""The diffusers config folder a single-file Stable Diffusion checkpoint needs, written offline, without torch.

``StableDiffusionImg2ImgPipeline.from_single_file(ckpt, config=FOLDER, local_files_only=True)`` (and its
SDXL twin) builds each component from the config files of FOLDER, laid out as a diffusers pipeline
repository is. Without ``config`` it would fetch them from the Hugging Face hub, which a deployment
may not reach; this package writes FOLDER from files shipped with Chhavi instead:

``sd15/`` and ``sdxl/``
    The JSON config files of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (SD 1.5, a copy of
    ``runwayml/stable-diffusion-v1-5``) and ``stabilityai/stable-diffusion-xl-base-1.0`` (SDXL base
    1.0) as the hub serves them: model_index.json, scheduler/, unet/, vae/, text_encoder/ (and
    text_encoder_2/ for SDXL), the tokenizer folders' special_tokens_map.json and
    tokenizer_config.json, and for SD 1.5 feature_extractor/preprocessor_config.json (its
    model_index.json names a CLIPImageProcessor, which ``from_single_file`` loads from there).
    Written from the diffusers/transformers config classes, every file has the exact byte size the
    hub shows for it; :data:`CONFIG_SHA256` pins their bytes.
``bpe_simple_vocab_16e6.txt.gz``
    OpenAI CLIP's byte-pair-encoding vocabulary (MIT, see LICENSE-CLIP.txt). Every tokenizer folder's
    ``vocab.json`` and ``merges.txt`` are derived from it exactly as Hugging Face's CLIP conversion did
    (:func:`derive_clip_tokenizer_files`); the result is byte-identical to the hub's files, whose
    published sizes and SHA-256s are in :data:`DERIVED_TOKENIZER_FILES`.

:func:`write_pipeline_configs` writes a family's folder and checks every file it wrote against those
figures. Nothing here imports torch, diffusers or transformers: the web process and the management
commands run it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from avatarapp.modelstore.errors import ModelStoreError

DATA_DIR = Path(__file__).resolve().parent

# OpenAI CLIP's BPE vocabulary as vendored (from the open-clip-torch 3.3.0 wheel, unchanged).
BPE_VOCAB_FILE = DATA_DIR / "bpe_simple_vocab_16e6.txt.gz"
BPE_VOCAB_SIZE = 1356917
BPE_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

# The derived tokenizer files: (size in bytes, SHA-256) of the hub's CLIP ViT-L/14 tokenizer files,
# the same in SD 1.5's tokenizer/ and SDXL's tokenizer/ and tokenizer_2/.
DERIVED_TOKENIZER_FILES: dict[str, tuple[int, str]] = {
    "vocab.json": (1059962, "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349"),
    "merges.txt": (524619, "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a"),
}

# CLIP's vocabulary: 256 byte symbols, the same with "</w>", 48894 merges, then the two special tokens.
CLIP_VOCAB_SIZE = 49408
CLIP_MERGES = CLIP_VOCAB_SIZE - 256 * 2 - 2

# The shipped config files of each family, path in the folder -> SHA-256 of their bytes.
CONFIG_SHA256: dict[str, dict[str, str]] = {
    "sd15": {
        "model_index.json": "e2f6f22e274374010aec30c79eb2d6e53fff4a36ac0225523a92cb2d41a83347",
        "feature_extractor/preprocessor_config.json":
            "2a1da83b5e1032aaeef397552ddb408dca0d8cd1dc58f61bf6abf38d6f33a0a2",
        "scheduler/scheduler_config.json": "699cce92eb7c122e2eb7dfdea78e6187fda76a5ed4a8e42319b85610e620e091",
        "text_encoder/config.json": "845df614cb9327ae7bbea027316246fae917827407da6df13572e41b5f93b4cc",
        "tokenizer/special_tokens_map.json": "c4864a9376a8401918425bed71fc14fc0e81f9b59ec45c1cf96cccb2df508eac",
        "tokenizer/tokenizer_config.json": "00439066fcba73de57644cf41e4e3b9f2dbb09d7f3fc2005898ba52399045882",
        "unet/config.json": "78f474de6bab3d893868f37be97b636ae65c0df3073ed3256ca458ff599b5f96",
        "vae/config.json": "786a7d21647ddea6a04b9675c03d3cb45e90a2f3c6da5fbda2c54ade040036de",
    },
    "sdxl": {
        "model_index.json": "6d7b93508390ab91ac5bfbe4aeb4dc2d83f7bb1b05fb069d714b5b0c75f70d44",
        "scheduler/scheduler_config.json": "af3e45a949aff8b8341ab8b811429ec03fee857a700a1d9477363e4fff9666e2",
        "text_encoder/config.json": "39b8b2e4b1949e36969caa425b6c81c68bace99198dd9078ce05d16ad401fe7f",
        "text_encoder_2/config.json": "a892d1c3a69a7e9247a24de2bc1d5891e3109a54696e53be20093af671072c34",
        "tokenizer/special_tokens_map.json": "c4864a9376a8401918425bed71fc14fc0e81f9b59ec45c1cf96cccb2df508eac",
        "tokenizer/tokenizer_config.json": "19d7b034cb0cc3ce9766c2231373ab8aa8991fc72e2c8f76558bfaae3de0d563",
        "tokenizer_2/special_tokens_map.json": "f118ab3a983206e4f32583448de6bd6aae4ee21869135cef1f5848a753cdaab6",
        "tokenizer_2/tokenizer_config.json": "c9d23941f76a41cbd50eda9290f57be7828f0a7a677939e9ef181f7e12bd1bdf",
        "unet/config.json": "30ebc70750223e59006f7f2b4e1e6c102570aa19a9c4ae3e1fbe7591332dbae6",
        "vae/config.json": "0b331c8ac22ded5f9997a144a575c1d113d6169aff262c353f39015bd24a6264",
    },
}
PIPELINE_FAMILIES = tuple(CONFIG_SHA256)

# The folders that get the derived vocab.json and merges.txt.
TOKENIZER_FOLDERS: dict[str, tuple[str, ...]] = {"sd15": ("tokenizer",), "sdxl": ("tokenizer", "tokenizer_2")}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes_to_unicode() -> list[str]:
    """CLIP's (and GPT-2's) 256 byte symbols in the order CLIP's vocabulary lists them: the printable
    bytes stand for themselves, then the others, in byte order, for the code points from 256 up (so no
    symbol is whitespace or a control character)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


@lru_cache(maxsize=1)
def derive_clip_tokenizer_files() -> dict[str, bytes]:
    """``vocab.json`` and ``merges.txt`` of the CLIP tokenizer, built from OpenAI's BPE file as
    Hugging Face's conversion did and as ``CLIPTokenizer.save_vocabulary`` writes them, checked
    against the hub's published sizes and SHA-256s (a damaged or changed .gz is refused)."""
    try:
        packed = BPE_VOCAB_FILE.read_bytes()
    except OSError as e:
        raise ModelStoreError(f"cannot read {BPE_VOCAB_FILE}: {e.strerror or e}; reinstall Chhavi") from None
    if len(packed) != BPE_VOCAB_SIZE or _sha256(packed) != BPE_VOCAB_SHA256:
        raise ModelStoreError(f"{BPE_VOCAB_FILE} is not OpenAI CLIP's BPE vocabulary (its size or SHA-256 differs); "
                              "reinstall Chhavi")
    lines = gzip.decompress(packed).decode("utf-8").split("\n")
    # Line 0 is a header; the merges follow in rank order, and CLIP keeps the first 48894.
    merges = [tuple(line.split()) for line in lines[1:1 + CLIP_MERGES]]
    byte_symbols = _bytes_to_unicode()
    tokens = [*byte_symbols, *(s + "</w>" for s in byte_symbols), *("".join(m) for m in merges),
              "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ModelStoreError(f"{BPE_VOCAB_FILE} gave {len(vocab)} tokens, not CLIP's {CLIP_VOCAB_SIZE}")
    # transformers' CLIPTokenizer.save_vocabulary: json.dumps(indent=2, sort_keys=True, ensure_ascii=False) + "\n",
    # and "#version: 0.2" then one merge a line in rank order.
    files = {
        "vocab.json": (json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"),
        "merges.txt": ("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges)).encode("utf-8"),
    }
    for name, data in files.items():
        size, sha = DERIVED_TOKENIZER_FILES[name]
        if len(data) != size or _sha256(data) != sha:
            raise ModelStoreError(f"the derived {name} ({len(data)} bytes, sha256 {_sha256(data)}) is not the hub's "
                                  f"({size} bytes, sha256 {sha})")
    return files


def pipeline_files(family: str) -> dict[str, bytes]:
    """Every file of a family's config folder: path in the folder (with "/") -> its bytes, each checked."""
    if family not in CONFIG_SHA256:
        raise ModelStoreError(f"no pipeline configs for family {family!r}: there are {', '.join(PIPELINE_FAMILIES)}")
    files = {}
    for rel, sha in CONFIG_SHA256[family].items():
        source = DATA_DIR / family / rel
        try:
            data = source.read_bytes()
        except OSError as e:
            raise ModelStoreError(f"cannot read {source}: {e.strerror or e}; reinstall Chhavi") from None
        if _sha256(data) != sha:
            raise ModelStoreError(f"{source} has been changed (its SHA-256 is not the shipped one); reinstall Chhavi")
        files[rel] = data
    for folder in TOKENIZER_FOLDERS[family]:
        for name, data in derive_clip_tokenizer_files().items():
            files[f"{folder}/{name}"] = data
    return files


def expected_sha256(family: str) -> dict[str, str]:
    """Path in a family's config folder -> the SHA-256 its file must have."""
    if family not in CONFIG_SHA256:
        raise ModelStoreError(f"no pipeline configs for family {family!r}: there are {', '.join(PIPELINE_FAMILIES)}")
    expected = dict(CONFIG_SHA256[family])
    for folder in TOKENIZER_FOLDERS[family]:
        for name, (_size, sha) in DERIVED_TOKENIZER_FILES.items():
            expected[f"{folder}/{name}"] = sha
    return expected


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pipeline_configs(family: str, folder: Path) -> list[Path]:
    """Write the diffusers config folder of ``family`` ("sd15" or "sdxl") into ``folder`` and return the
    files written, sorted. Each file is replaced in one step (an existing folder is updated in place;
    other files in it are left alone), then read back and checked against its SHA-256. The result is
    what ``from_single_file(checkpoint, config=folder, local_files_only=True)`` needs."""
    files = pipeline_files(family)
    expected = expected_sha256(family)
    folder = Path(folder)
    written = []
    try:
        for rel, data in sorted(files.items()):
            path = folder.joinpath(*rel.split("/"))
            _write_atomically(path, data)
            written.append(path)
        for rel, path in zip(sorted(files), written, strict=True):
            if _sha256(path.read_bytes()) != expected[rel]:
                raise ModelStoreError(f"{path} does not hold what was written (SHA-256 differs); check the disk")
    except OSError as e:
        raise ModelStoreError(f"cannot write the {family} pipeline configs into {folder}: {e.strerror or e}") from None
    return written
