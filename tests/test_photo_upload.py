"""Uploads are judged by content: good photos are normalised, everything else is a clean 4xx."""

import io
import struct
import zlib

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings
from PIL import Image

from avatarapp.photos.models import Photo
from tests.helpers import FIXTURES, new_guest

pytestmark = pytest.mark.django_db


def stored_image(api, photo) -> Image.Image:
    response = api.client.get(photo["url"], headers=api.headers())
    assert response.status_code == 200
    return Image.open(io.BytesIO(b"".join(response.streaming_content)))


def stored_files() -> int:
    count = 0
    dirs = [""]
    while dirs:
        d = dirs.pop()
        try:
            subdirs, files = default_storage.listdir(d)
        except FileNotFoundError:
            continue
        count += len(files)
        dirs += [f"{d}/{s}".lstrip("/") for s in subdirs]
    return count


def test_a_jpeg_portrait_is_accepted_and_served_to_its_owner():
    api = new_guest()
    response = api.upload_fixture("portrait.jpg")
    assert response.status_code == 201
    photo = response.json()
    assert (photo["width"], photo["height"]) == (512, 512)
    image = stored_image(api, photo)
    assert image.format == "JPEG" and image.size == (512, 512)
    assert photo["expires_at"]


def test_a_rotated_phone_photo_is_turned_upright_and_loses_its_gps_and_camera_data():
    api = new_guest()
    photo = api.upload_fixture("selfie_rotated_gps.jpg").json()
    assert (photo["width"], photo["height"]) == (1536, 1280)
    image = stored_image(api, photo)
    assert image.size == (1536, 1280)
    assert not image.getexif()
    assert "exif" not in image.info and "xmp" not in image.info and "comment" not in image.info


def test_an_iphone_heic_selfie_is_accepted_as_jpeg():
    api = new_guest()
    photo = api.upload_fixture("selfie.heic").json()
    assert (photo["width"], photo["height"]) == (1536, 1280)
    assert stored_image(api, photo).format == "JPEG"


def test_a_transparent_png_is_flattened_onto_an_opaque_background():
    api = new_guest()
    photo = api.upload_fixture("portrait_alpha.png").json()
    image = stored_image(api, photo)
    assert image.mode == "RGB"
    assert image.getpixel((256, 10))[0] > 240  # the transparent band became white


def assert_rejected(api, data: bytes, status: int, code: str):
    before_rows, before_files = Photo.objects.count(), stored_files()
    response = api.upload(data)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert Photo.objects.count() == before_rows
    assert stored_files() == before_files
    return error


def test_a_photo_too_small_for_a_portrait_is_refused_with_a_clear_reason():
    api = new_guest()
    error = assert_rejected(api, (FIXTURES / "too_small.jpg").read_bytes(), 400, "invalid_image")
    assert error["reason"] == "too_small"
    assert "small" in error["message"]


@pytest.mark.parametrize("data", [
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    b"<!doctype html><html><body>hello</body></html>",
    b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    b"",
    b"%PDF-1.4 not a photo",
])
def test_files_that_are_not_photos_are_unsupported(data):
    assert_rejected(new_guest(), data, 415, "unsupported_type")


def test_a_truncated_jpeg_is_invalid():
    data = (FIXTURES / "portrait.jpg").read_bytes()
    assert_rejected(new_guest(), data[: len(data) // 3], 400, "invalid_image")


def test_a_jpeg_with_html_appended_is_re_encoded_without_it():
    api = new_guest()
    data = (FIXTURES / "portrait.jpg").read_bytes() + b"<html><script>alert(1)</script></html>"
    photo = api.upload(data).json()
    response = api.client.get(photo["url"], headers=api.headers())
    assert b"<script>" not in b"".join(response.streaming_content)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge canvas."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    assert_rejected(new_guest(), png_bomb(30000, 30000), 413, "too_large")


@override_settings(AVATAR_MAX_UPLOAD_BYTES=50_000)
def test_a_file_over_the_size_cap_is_too_large():
    assert_rejected(new_guest(), (FIXTURES / "selfie_rotated_gps.jpg").read_bytes(), 413, "too_large")


def test_a_missing_file_field_is_a_json_400():
    api = new_guest()
    response = api.client.post("/api/v1/photos", {}, headers=api.headers())
    assert response.status_code == 400
    assert "image" in response.json()["error"]["fields"]


def test_an_owner_can_delete_a_photo_and_its_file_goes_too():
    api = new_guest()
    photo = api.upload_fixture().json()
    key = Photo.objects.get(id=photo["id"]).storage_key
    assert api.delete(f"/photos/{photo['id']}").status_code == 204
    assert not default_storage.exists(key)
    assert api.get(f"/photos/{photo['id']}").status_code == 404
