"""An invisible watermark that carries an output's short id: its format, and reading it.

The worker embeds it (worker/provenance/watermark_embed.py); the web side reads it
(`verify_image`), so the format lives here, importable without torch.

Why our own and not the `invisible-watermark` package: its DWT-DCT marks do not
survive downscaling, and people resize pictures before posting them. This mark
lives in low-frequency DCT coefficients of the image's luminance *at a fixed
canonical size*, so any rescale that keeps the aspect ratio, and JPEG at
ordinary qualities, leave it readable.

Embedding: resize the luminance to 256x256, take the 8x8 block DCT, and set
one coefficient per block to an even or odd multiple of half a quantisation
step (quantisation index modulation) to carry one bit; the payload (a 32-bit
id and a 24-bit check) is repeated over all 1024 blocks. The change is made at
the canonical size, scaled back up, and added to the full-size image: a
smooth difference of a few grey levels.

Reading: the same resize and DCT, a majority vote per payload bit, and the
check must match, so an unmarked image is "not found" (a chance of 1 in 2^24,
about 17 million, that noise passes the check per read, and the vote margin
must be clear too). avatarapp/provenance/reader.py reads it after undoing a
mirror or a tilt, and layers RivaGAN beside it for crops.

This is one layer of the mark the worker embeds (worker/provenance/watermark_embed.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from PIL import Image

CANONICAL = 256
BLOCK = 8
COEFFICIENT = (1, 2)  # low frequency: survives JPEG and resampling
STEP = 36.0
ID_BITS = 32
CHECK_BITS = 24  # was 16: the reader now tries several undoings, and each try is a chance for noise
PAYLOAD_BITS = ID_BITS + CHECK_BITS
MIN_AGREEMENT = 0.7
# Contrast gains the reader undoes; each is one more try for the check to be passed by chance (2^-24 each).
GAINS = tuple(round(2 ** (k / 6), 3) for k in (0, -1, 1, -2, 2, -3, 3, -4, 4))  # 0.63x to 1.59x, steps of 12 %


def dct_matrix(n: int = BLOCK) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


DCT = dct_matrix()


LEGACY_CHECK_BITS = 16  # marks made before the reader tried undoings (see reader.py)


def _check(short_id: int, check_bits: int = CHECK_BITS) -> int:
    return int.from_bytes(hashlib.sha256(short_id.to_bytes(4, "big")).digest()[:check_bits // 8], "big")


def payload_bits(short_id: int, check_bits: int = CHECK_BITS) -> np.ndarray:
    length = ID_BITS + check_bits
    value = (short_id << check_bits) | _check(short_id, check_bits)
    return np.array([(value >> (length - 1 - i)) & 1 for i in range(length)], dtype=np.int64)


def _luma(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def _blocks(plane: np.ndarray) -> np.ndarray:
    n = CANONICAL // BLOCK
    return plane.reshape(n, BLOCK, n, BLOCK).transpose(0, 2, 1, 3)  # (by, bx, 8, 8)


def canonical_coefficients(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    small = np.asarray(Image.fromarray(luma.astype(np.float32), mode="F").resize(
        (CANONICAL, CANONICAL), Image.Resampling.BOX), dtype=np.float64)
    coefficients = DCT @ _blocks(small) @ DCT.T
    return small, coefficients


def short_id_of(output_id: UUID | str) -> int:
    """The 32-bit id a watermark carries: the first 8 hex digits of the output's UUID."""
    return int(str(output_id).replace("-", "")[:8], 16)


@dataclass
class WatermarkReading:
    found: bool
    short_id: int | None
    agreement: float

    @property
    def short_id_hex(self) -> str | None:
        return f"{self.short_id:08x}" if self.short_id is not None else None


def _vote(c: np.ndarray, check_bits: int = CHECK_BITS) -> WatermarkReading:
    """Read the payload from one block coefficient per block, by majority vote, and test its check."""
    payload = ID_BITS + check_bits
    # Distance to the lattice for bit 0 and bit 1; the nearer one wins.
    d0 = np.abs(c - np.round(c / STEP) * STEP)
    d1 = np.abs(c - (np.round((c - STEP / 2) / STEP) * STEP + STEP / 2))
    votes = (d1 < d0).astype(np.int64)
    positions = np.arange(c.size) % payload
    ones = np.bincount(positions, weights=votes, minlength=payload)
    totals = np.bincount(positions, minlength=payload)
    bits = (ones * 2 > totals).astype(np.int64)
    agreement = float(np.mean(np.maximum(ones, totals - ones) / totals))
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    short_id, check = value >> check_bits, value & ((1 << check_bits) - 1)
    found = check == _check(short_id, check_bits) and agreement >= MIN_AGREEMENT
    return WatermarkReading(found=found, short_id=short_id if found else None, agreement=agreement)


def read(image: Image.Image) -> WatermarkReading:
    """The mark, trying the contrast changes people make: a gain scales every coefficient, which moves
    them off the lattice (a brightness offset does not touch these AC coefficients)."""
    _, coefficients = canonical_coefficients(_luma(image))
    u, v = COEFFICIENT
    c = coefficients[:, :, u, v].reshape(-1)
    best = WatermarkReading(found=False, short_id=None, agreement=0.0)
    for gain in GAINS:
        reading = _vote(c / gain)
        if reading.found:
            return reading
        best = max(best, reading, key=lambda r: r.agreement)
    return best


def read_legacy(image: Image.Image) -> WatermarkReading:
    """A mark made before the check grew to 24 bits (16 then), read as it is: only worth believing
    when the id names an output of this server (the reader asks)."""
    _, coefficients = canonical_coefficients(_luma(image))
    u, v = COEFFICIENT
    return _vote(coefficients[:, :, u, v].reshape(-1), LEGACY_CHECK_BITS)
