"""RivaGAN, the learned watermark that outlives crops and small rotations: its models and its reader.

The trained encoder and decoder (ONNX, MIT licence) ship inside the `invisible-watermark`
package (module `imwatermark`). We use only those two files, through onnxruntime: the
package's own Python code imports torch and OpenCV, which the web side must not load.
The worker embeds (worker/provenance/watermark_embed.py); `verify_image` reads.

RivaGAN carries exactly 32 bits, all of them taken by the output's short id, so this
layer has no room for a check of its own: a reading counts only when it names an output
that exists on this server (see avatarapp/provenance/reader.py). The DCT layer
(watermark.py) carries the id with a 24-bit check and answers on its own.

Speed: the networks run at a canonical size (longest side CANONICAL_SIDE, the aspect
kept so crops do not stretch the pattern); the change is scaled up to the full picture,
like the DCT mark's. The worker runs the encoder's arithmetic with torch instead
(worker/provenance/rivagan_encoder.py, same weights, 1.2-2.7x faster on a CPU); the decoder
runs here, with onnxruntime, so the web side reads without torch.
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DISTRIBUTION = "invisible-watermark"
MODEL_FILES = {"encoder": "imwatermark/rivagan_encoder.onnx", "decoder": "imwatermark/rivagan_decoder.onnx"}
BITS = 32
CANONICAL_SIDE = 256  # 192 lost a bit or two to JPEG and rescales (bench/watermark.py)
# The reader's second try: the picture read 10 % smaller, which undoes the enlargement a crop of
# 70-90 % of the area brings when the picture is scaled to CANONICAL_SIDE again (reader.py).
CROP_SIDE = 232


def model_path(part: str) -> Path | None:
    """Where the installed package keeps the network (found without importing its torch code)."""
    try:
        path = Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file(MODEL_FILES[part])))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return model_path("encoder") is not None and model_path("decoder") is not None


@lru_cache(maxsize=2)
def session(part: str) -> Any:
    import onnxruntime  # only the processes that mark or read load it

    path = model_path(part)
    if path is None:
        raise RuntimeError(f"RivaGAN's {part} is missing: install the `{DISTRIBUTION}` package")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initialisers are noise
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def canonical_size(width: int, height: int, side: int = CANONICAL_SIDE) -> tuple[int, int]:
    scale = side / max(width, height)
    # Multiples of 8 keep the networks' strided convolutions aligned.
    return max(32, round(width * scale / 8) * 8), max(32, round(height * scale / 8) * 8)


def canonical_rgb(image: Image.Image, side: int = CANONICAL_SIDE) -> np.ndarray:
    rgb = image.convert("RGB")
    return np.asarray(rgb.resize(canonical_size(*rgb.size, side), Image.Resampling.BOX), dtype=np.float32)


def to_frame(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in 0..255 to the networks' (1, 3, 1, H, W) BGR in -1..1 (trained on OpenCV frames)."""
    bgr = rgb[:, :, ::-1] / 127.5 - 1.0
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None, :, None], dtype=np.float32)


def from_frame(frame: np.ndarray) -> np.ndarray:
    bgr = (np.clip(frame[0, :, 0].transpose(1, 2, 0), -1.0, 1.0) + 1.0) * 127.5
    return np.ascontiguousarray(bgr[:, :, ::-1])


def id_bits(short_id: int) -> np.ndarray:
    return np.array([(short_id >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.float32)


def read_word(image: Image.Image, side: int = CANONICAL_SIDE) -> int:
    """The 32-bit word the decoder reads with the picture's longest side scaled to `side` (always some
    word: whether it means anything is the caller's test)."""
    logits = session("decoder").run(None, {"frame": to_frame(canonical_rgb(image, side))})[0][0]
    word = 0
    for bit in logits > 0:
        word = (word << 1) | int(bit)
    return word
