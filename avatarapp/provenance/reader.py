"""Reading the layered mark the way pictures come back from sharing: undo what people do, then read.

Two layers carry the output's 32-bit short id (the worker embeds both:
worker/provenance/watermark_embed.py):

- the DCT mark (watermark.py): id plus a 24-bit check, readable at any scale, after JPEG
  and colour changes; it answers alone, so it says "marked by a Chhavi server, output X"
  even for outputs of other servers;
- RivaGAN (rivagan.py): the id alone, no room for a check; it outlives crops and small
  rotations, and counts only when the caller confirms that the id names one of its outputs.

Pictures marked before the layers (DCT alone, 16-bit check) are still read, as they are,
and count only when the caller confirms the id too.

Before "not found" the reader tries the likely undoings: for the DCT layer the picture as it
is, mirrored back, and rotated back by a few degrees; for RivaGAN the picture as it is and
read 10 % smaller (a crop keeping 70-90 % of the area enlarges the pattern by 5-20 % once
the picture is scaled to the canonical size again). Each try is another chance for noise to
pass a check, so the list is short; the false-positive bound in the README counts every try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

from avatarapp.provenance import rivagan, watermark

Undoing = tuple[str, Callable[[Image.Image], Image.Image]]


def _rotated(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def undo(image: Image.Image) -> Image.Image:
        return image.convert("RGB").rotate(degrees, Image.Resampling.BILINEAR)
    return undo


def _as_is(image: Image.Image) -> Image.Image:
    return image


# The DCT mark is read at a canonical size, so rescales need no undoing; a mirror and a tilt do.
DCT_UNDOINGS: list[Undoing] = [
    ("as is", _as_is),
    ("mirrored", ImageOps.mirror),
    *[(f"rotated back {d:+g}°", _rotated(d)) for d in (-4.0, -2.0, 2.0, 4.0)],
]
# RivaGAN's tries: (name, the longest side it is read at). Measured (bench/watermark.py): the second
# try brings back about one in five of the crops the first misses; a try for mirrored pictures
# brought back none of the suite's cases (the DCT layer reads mirrors), so it went: each try adds
# N outputs / 2^32 to the false-positive bound, and two keep it under 10^-5 for 10,000 outputs.
RIVAGAN_TRIES: list[tuple[str, int]] = [("as is", rivagan.CANONICAL_SIDE),
                                        ("read 10 % smaller (a crop's enlargement undone)", rivagan.CROP_SIDE)]


@dataclass
class Finding:
    found: bool
    short_id: int | None = None
    layer: str | None = None  # "dct" or "rivagan"
    undoing: str | None = None
    agreement: float = 0.0  # the DCT layer's best vote agreement (0.5 is noise)

    @property
    def short_id_hex(self) -> str | None:
        return f"{self.short_id:08x}" if self.short_id is not None else None


def find(image: Image.Image, known: Callable[[int], bool] | None = None) -> Finding:
    """The short id the picture carries, or not found.

    `known(short_id)` says whether an id names one of this server's outputs; without it
    only the DCT layer (which checks itself) can answer.
    """
    image = image.convert("RGB")
    best = 0.0
    for name, undo in DCT_UNDOINGS:
        reading = watermark.read(undo(image))
        best = max(best, reading.agreement)
        if reading.found:
            return Finding(True, reading.short_id, "dct", name, reading.agreement)
    if known is not None:
        legacy = watermark.read_legacy(image)
        if legacy.found and legacy.short_id is not None and known(legacy.short_id):
            return Finding(True, legacy.short_id, "dct (16-bit check, before RivaGAN)", "as is", legacy.agreement)
    if known is not None and rivagan.available():
        for name, side in RIVAGAN_TRIES:
            word = rivagan.read_word(image, side)
            if known(word):
                return Finding(True, word, "rivagan", name, best)
    return Finding(False, agreement=best)
