"""Embed the layered invisible mark: RivaGAN, then the DCT mark (formats and readers: avatarapp/provenance/).

RivaGAN goes first: the DCT mark is a precise lattice of coefficients that a later
change would blur, while RivaGAN's decoder shrugs off the DCT mark's few grey levels.
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


def _scaled_up(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC),
                      dtype=np.float64)


def embed_dct(image: Image.Image, short_id: int, check_bits: int = CHECK_BITS) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    _, coefficients = canonical_coefficients(luma)
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
    marked = np.clip(rgb + delta[:, :, None], 0, 255)
    return Image.fromarray(np.round(marked).astype(np.uint8), mode="RGB")


def embed_rivagan(image: Image.Image, short_id: int) -> Image.Image:
    """RivaGAN's change, made at the canonical size and scaled up onto the full picture."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    small = rivagan.canonical_rgb(image)
    frame = rivagan.session("encoder").run(
        None, {"frame": rivagan.to_frame(small), "data": rivagan.id_bits(short_id)[None]})[0]
    delta_small = rivagan.from_frame(frame) - small
    delta = np.stack([_scaled_up(delta_small[:, :, c], image.size) for c in range(3)], axis=-1)
    marked = np.clip(rgb + delta, 0, 255)
    return Image.fromarray(np.round(marked).astype(np.uint8), mode="RGB")


def embed(image: Image.Image, short_id: int) -> Image.Image:
    """Both layers, each carrying the short id (RivaGAN's encoder must be installed: the worker extra)."""
    return embed_dct(embed_rivagan(image, short_id), short_id)
