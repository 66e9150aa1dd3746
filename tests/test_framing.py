"""Framing: head and shoulders around the chosen face, at the output's aspect, where a centre crop would cut it."""

import pytest
from PIL import Image, ImageOps

from avatarapp.faces.detect import find_faces
from avatarapp.faces.framing import Crop, centre_crop, face_crop, portrait_crop
from avatarapp.photos.normalize import normalise_upload
from tests.helpers import FIXTURES

SQUARE, TALL = 1.0, 896 / 1152  # a 512x512 pack and an SDXL portrait pack


def upright(name: str) -> Image.Image:
    if name.endswith(".heic"):
        normalised = normalise_upload((FIXTURES / name).read_bytes())
        assert normalised.pixels is not None
        return normalised.pixels
    return ImageOps.exif_transpose(Image.open(FIXTURES / name)).convert("RGB")


def aspect_of(crop: Crop) -> float:
    return crop.width / crop.height


@pytest.mark.parametrize("name", ["selfie_wide.jpg", "two_people.jpg"])
@pytest.mark.parametrize("aspect", [SQUARE, TALL])
def test_the_crop_keeps_the_chosen_face_whole_where_a_centre_crop_cuts_it(name, aspect):
    image = upright(name)
    face = find_faces(image)[0]
    crop = portrait_crop(face, image.width, image.height, aspect)
    assert crop.contains(face)
    assert not centre_crop(image.width, image.height, aspect).contains(face)
    assert aspect_of(crop) == pytest.approx(aspect, rel=0.02)
    assert 0 <= crop.left < crop.right <= image.width and 0 <= crop.top < crop.bottom <= image.height


@pytest.mark.parametrize("name", ["selfie_rotated_gps.jpg", "portrait.jpg"])
@pytest.mark.parametrize("aspect", [SQUARE, TALL])
def test_the_face_sits_in_the_upper_part_with_the_shoulders_below(name, aspect):
    image = upright(name)
    face = find_faces(image)[0]
    crop = portrait_crop(face, image.width, image.height, aspect)
    assert crop.contains(face)
    face_middle = (face.top + face.bottom) / 2
    assert crop.top < face_middle < crop.top + crop.height / 2  # the upper half
    # Room below the chin for neck and shoulders: at least as much again as the face's height.
    assert crop.bottom - face.bottom >= face.height
    # Head and shoulders, not a passport close-up nor the whole room.
    assert 0.2 <= face.width / crop.width <= 0.45


def test_a_face_at_the_edge_slides_the_crop_instead_of_cutting_the_face():
    face_box = find_faces(upright("selfie_wide.jpg"))[0]
    # The same face moved to the picture's very top-right corner.
    moved = type(face_box)(1800 - face_box.width, 0, 1800, face_box.height)
    crop = portrait_crop(moved, 1800, 900, SQUARE)
    assert crop.contains(moved)
    assert crop.right == 1800 and crop.top == 0


def test_the_identity_adapters_reference_is_a_square_around_the_face():
    image = upright("two_people.jpg")
    face = find_faces(image)[0]
    crop = face_crop(face, image.width, image.height)
    assert crop.width == crop.height
    assert crop.contains(face)
    assert crop.width <= 2 * max(face.width, face.height)  # the face, not the room
    assert 0 <= crop.left and crop.right <= image.width and 0 <= crop.top and crop.bottom <= image.height
