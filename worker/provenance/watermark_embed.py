"""Embed the invisible watermark (its format and reader: avatarapp/provenance/watermark.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from avatarapp.provenance.watermark import CANONICAL, COEFFICIENT, DCT, STEP, canonical_coefficients, payload_bits


def embed(image: Image.Image, short_id: int) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    _, coefficients = canonical_coefficients(luma)
    bits = np.resize(payload_bits(short_id), coefficients.shape[:2])
    u, v = COEFFICIENT
    c = coefficients[:, :, u, v]
    offset = bits * STEP / 2
    target = np.round((c - offset) / STEP) * STEP + offset
    delta_coefficients = np.zeros_like(coefficients)
    delta_coefficients[:, :, u, v] = target - c
    delta_blocks = DCT.T @ delta_coefficients @ DCT
    delta_small = delta_blocks.transpose(0, 2, 1, 3).reshape(CANONICAL, CANONICAL)
    delta = np.asarray(Image.fromarray(delta_small.astype(np.float32), mode="F").resize(
        (image.width, image.height), Image.Resampling.BICUBIC), dtype=np.float64)
    # The same change on R, G and B changes luminance only, leaving hues alone.
    marked = np.clip(rgb + delta[:, :, None], 0, 255)
    return Image.fromarray(np.round(marked).astype(np.uint8), mode="RGB")
