"""Faces are found at upload: no face and a face too small are refused, leaving nothing; the largest face is chosen."""

import io

import pytest
from django.test import Client
from PIL import Image

from avatarapp.photos.models import Photo
from tests.helpers import FIXTURES, new_guest
from tests.test_photo_upload import assert_rejected

pytestmark = pytest.mark.django_db

# Hand-marked face centres (between the eyes and the mouth), in each photo's upright pixels.
PORTRAIT = (222, 128)
OTHER_PERSON = (268, 248)
SELFIE = (676, 262)  # selfie_rotated_gps.jpg once upright, and selfie.heic
SELFIE_WIDE = (1300, 220)
TWO_PEOPLE_HOPPER = (772, 238)
TWO_PEOPLE_ASTRONAUT = (226, 166)


def box_marks(box: dict, point: tuple[int, int]) -> bool:
    """The box holds the marked point near its middle, at a face's size."""
    x, y = point
    inside = box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    near_middle = abs(centre_x - x) <= box["width"] / 4 and abs(centre_y - y) <= box["height"] / 4
    return inside and near_middle and 40 <= box["width"] <= 500


@pytest.mark.parametrize(("name", "point"), [
    ("portrait.jpg", PORTRAIT),
    ("other_person.jpg", OTHER_PERSON),
    ("selfie_rotated_gps.jpg", SELFIE),
    ("selfie.heic", SELFIE),
    ("selfie_wide.jpg", SELFIE_WIDE),
])
def test_a_photo_of_one_person_has_exactly_that_face(name, point):
    response = new_guest().upload_fixture(name)
    assert response.status_code == 201, response.content
    faces = response.json()["faces"]
    assert len(faces) == 1
    assert faces[0]["chosen"] is True
    assert box_marks(faces[0]["box"], point), faces


def test_a_photo_of_two_people_is_accepted_and_the_larger_face_chosen():
    photo = new_guest().upload_fixture("two_people.jpg").json()
    chosen, other = photo["faces"]
    assert (chosen["chosen"], other["chosen"]) == (True, False)
    assert box_marks(chosen["box"], TWO_PEOPLE_HOPPER)
    assert box_marks(other["box"], TWO_PEOPLE_ASTRONAUT)
    assert chosen["box"]["width"] * chosen["box"]["height"] > other["box"]["width"] * other["box"]["height"]
    # The crop a portrait is made from holds the chosen face.
    crop, box = photo["crop"], chosen["box"]
    assert crop["x"] <= box["x"] and crop["x"] + crop["width"] >= box["x"] + box["width"]


def test_a_photo_with_no_face_is_refused_and_nothing_is_stored():
    api = new_guest()
    error = assert_rejected(api, (FIXTURES / "no_face.jpg").read_bytes(), 400, "no_face")
    assert "face" in error["message"]


def test_a_face_too_small_to_work_from_is_refused_with_a_hint_to_come_closer():
    # The portrait at 300 pixels: its face is about 50 pixels wide, under AVATAR_MIN_FACE_SIDE (64).
    small = Image.open(FIXTURES / "portrait.jpg").resize((300, 300), Image.Resampling.LANCZOS)
    data = io.BytesIO()
    small.save(data, "JPEG", quality=92)
    error = assert_rejected(new_guest(), data.getvalue(), 400, "face_too_small")
    assert "closer" in error["message"]


def test_the_refusals_speak_the_users_language():
    api = new_guest(language="hi")
    response = api.upload((FIXTURES / "no_face.jpg").read_bytes())
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert any("\u0900" <= ch <= "\u097f" for ch in message), message  # Devanagari


def test_the_photo_resource_keeps_its_faces():
    api = new_guest()
    uploaded = api.upload_fixture("two_people.jpg").json()
    again = api.get(f"/photos/{uploaded['id']}").json()
    assert again["faces"] == uploaded["faces"]
    assert Photo.objects.get(id=uploaded["id"]).faces[0]["score"] > 0.5


def test_the_page_after_upload_shows_the_crop_and_which_face_is_used(packs):
    client = Client()
    client.post("/consent", {"adult": "yes", "agree": "yes", "next": "/upload"})
    with (FIXTURES / "two_people.jpg").open("rb") as f:
        uploaded = client.post("/upload", {"image": f})
    assert uploaded.status_code == 302
    photo = Photo.objects.get()
    crop = photo.crop(1.0)
    html = client.get(uploaded.url).content.decode()
    assert f'<rect class="framing-crop" x="{crop.left}" y="{crop.top}" width="{crop.width}"' in html
    assert html.count('class="framing-other-face"') == 1
    assert "we use the largest one" in html


def test_the_page_refuses_a_photo_with_no_face_in_words(packs):
    client = Client()
    client.post("/consent", {"adult": "yes", "agree": "yes", "next": "/upload"})
    with (FIXTURES / "no_face.jpg").open("rb") as f:
        refused = client.post("/upload", {"image": f})
    assert refused.status_code == 400
    assert "could not find a face" in refused.content.decode()
    assert not Photo.objects.exists()
