"""Embed the layered invisible mark: RivaGAN, then the DCT mark (formats and readers: avatarapp/provenance/).

RivaGAN goes first: the DCT mark is a precise lattice of coefficients that a later
change would blur, while RivaGAN's decoder shrugs off the DCT mark's few grey levels.

RivaGAN's encoder runs with torch (worker/provenance/rivagan_encoder.py: the package's
network and weights, faster than onnxruntime on a CPU); the web side only reads.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from avatarapp.provenance import rivagan
from avatarapp.provenance.watermark import (
    CANONICAL,
    CHECK_BITS,
    COEFFICIENT,
    DCT,
    STEP,
    canonical_coefficients,
    payload_bits,
)

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# RivaGAN's change, written 30 % stronger than its encoder makes it: the change is nearly ±2 grey levels
# everywhere (the network's tanh saturates), and rounds to ±3 from a gain of 1.23 on. Measured on the
# suite's crops, screenshots and rotations of the natural pictures (bench/watermark.py), the layered mark
# came back in 112 of 132 of those cases at 1.3 against 95 at 1.0 and 101 at 1.2; worst PSNR 38.4 dB
# against 40.9 (budget 38).
RIVAGAN_GAIN = 1.3


def _scaled_up(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC))


def _with_delta(rgb: np.ndarray, delta: np.ndarray) -> Image.Image:
    marked = rgb.astype(np.float32) + delta
    np.clip(marked, 0, 255, out=marked)
    return Image.fromarray(np.rint(marked).astype(np.uint8), mode="RGB")


def embed_dct(image: Image.Image, short_id: int, check_bits: int = CHECK_BITS) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"))
    _, coefficients = canonical_coefficients(rgb @ LUMA)
    bits = np.resize(payload_bits(short_id, check_bits), coefficients.shape[:2])
    u, v = COEFFICIENT
    c = coefficients[:, :, u, v]
    offset = bits * STEP / 2
    target = np.round((c - offset) / STEP) * STEP + offset
    delta_coefficients = np.zeros_like(coefficients)
    delta_coefficients[:, :, u, v] = target - c
    delta_blocks = DCT.T @ delta_coefficients @ DCT
    delta_small = delta_blocks.transpose(0, 2, 1, 3).reshape(CANONICAL, CANONICAL)
    delta = _scaled_up(delta_small, image.size)
    # The same change on R, G and B changes luminance only, leaving hues alone.
    return _with_delta(rgb, delta[:, :, None])


def embed_rivagan(image: Image.Image, short_id: int) -> Image.Image:
    """RivaGAN's change, made at the canonical size and scaled up onto the full picture."""
    from worker.provenance.rivagan_encoder import encoder  # torch: only where RivaGAN is written (not cards)

    rgb = np.asarray(image.convert("RGB"))
    small = rivagan.canonical_rgb(image)
    frame = encoder()(rivagan.to_frame(small), rivagan.id_bits(short_id)[None])
    delta_small = (rivagan.from_frame(frame) - small) * RIVAGAN_GAIN
    delta = np.stack([_scaled_up(delta_small[:, :, c], image.size) for c in range(3)], axis=-1)
    return _with_delta(rgb, delta)


def embed(image: Image.Image, short_id: int) -> Image.Image:
    """Both layers, each carrying the short id (RivaGAN's encoder must be installed: the worker extra)."""
    return embed_dct(embed_rivagan(image, short_id), short_id)
