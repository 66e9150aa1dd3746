"""Choose which generated pictures a job keeps: the likest, skin not lightened, a face in each.

A job generates more pictures than it keeps (oversampling); `measure` reads each one's face
against the selfie's, `rank` orders them and keeps the best. The order, most wanted first:

1. pictures whose skin was not lightened beyond the allowed shift (AVATAR_SKIN_LIGHTENING_MAX),
2. then, among those, pictures with a face before pictures without one,
3. then higher likeness to the selfie first,
4. and the lightened pictures, last: those that still show the selfie's person (likeness ≥
   SAME_PERSON) by smallest lightening first, then the others the same way. Why the person
   check: a cool colour grade over a whole picture reads as lighter skin too (ITA cannot tell
   the light from the skin), so a pack with a cool look can leave every picture "lightened";
   the job should then still keep its likest pictures, not a stranger who happens to shift less;
5. ties keep generation order (the seed order), so the same inputs always keep the same pictures.

A job never fails here: with fewer good pictures than it keeps, it keeps the best of the rest.
Pure functions of their inputs: no Django, no database, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from worker.faces import SAME_PERSON, FaceAnalyser, FaceReading, likeness


@dataclass
class Candidate:
    """A generated picture and what its face says.

    `likeness` is None when either the picture or the selfie has no face read;
    `skin_tone_shift` (output ITA − selfie ITA, degrees; positive = drawn lighter) is None
    when either skin tone could not be measured.
    """

    position: int
    image: Image.Image
    reading: FaceReading | None
    likeness: float | None
    skin_tone_shift: float | None
    lightened: bool


def measure(analyser: FaceAnalyser, source: FaceReading | None, images: Sequence[Image.Image], *,
            max_lightening: float) -> list[Candidate]:
    """A Candidate per image, in generation order, compared with the selfie's face `source`.

    `max_lightening` (ITA degrees) is how much lighter than the selfie a face may be drawn
    before it counts as lightened.
    """
    candidates = []
    for position, image in enumerate(images):
        reading = analyser.read(image)
        similar = likeness(source, reading) if source is not None and reading is not None else None
        shift = skin_tone_shift(source, reading)
        candidates.append(Candidate(position=position, image=image, reading=reading, likeness=similar,
                                    skin_tone_shift=shift,
                                    lightened=shift is not None and shift > max_lightening))
    return candidates


def skin_tone_shift(source: FaceReading | None, output: FaceReading | None) -> float | None:
    """How many ITA degrees lighter `output`'s skin is than `source`'s (negative: darker)."""
    if source is None or output is None or source.skin_ita is None or output.skin_ita is None:
        return None
    return round(output.skin_ita - source.skin_ita, 2)


def rank_key(candidate: Candidate) -> tuple[bool, bool, bool, float, float, int]:
    """Sort key, smaller first: see the module's docstring for the order."""
    # No likeness (the selfie had no readable face) ranks as 0: faces then keep generation order.
    similar = candidate.likeness if candidate.likeness is not None else 0.0
    # Only a lightened picture has its shift counted (never None then: `measure` set it from one):
    # among the pictures kept as they are, likeness decides, not how light they came out.
    shift = candidate.skin_tone_shift if candidate.lightened and candidate.skin_tone_shift is not None else 0.0
    stranger = candidate.lightened and similar < SAME_PERSON
    return (candidate.lightened, candidate.reading is None, stranger, shift, -similar, candidate.position)


def rank(candidates: Sequence[Candidate], keep: int) -> list[Candidate]:
    """The `keep` best candidates, best first (all of them when there are fewer)."""
    return sorted(candidates, key=rank_key)[:max(0, keep)]
