"""Both doors, the pages and the JSON API, go through the same actions and refuse alike."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from avatarapp.lib.storage_keys import user_prefix
from avatarapp.photos.models import Photo
from tests.helpers import FIXTURES, new_guest, store_picture

pytestmark = pytest.mark.django_db


def signed_in_page_client(language: str) -> Client:
    client = Client(headers={"Accept-Language": language})
    assert client.post("/consent", {"adult": "yes", "agree": "yes"}).status_code == 302
    return client


def test_a_file_that_is_no_photo_is_refused_with_the_same_status_and_words_on_both_doors():
    api = new_guest(language="hi")
    refused = api.upload(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "face.jpg")
    assert refused.status_code == 415
    message = refused.json()["error"]["message"]
    assert message and message != "Please upload a JPEG, PNG, WebP or HEIC photo."  # in Hindi

    page = signed_in_page_client("hi").post("/upload", {"image": ContentFile(b"<svg/>", name="face.jpg")})
    assert page.status_code == 415
    assert message in page.content.decode()
    assert Photo.objects.count() == 0


def test_an_upload_over_the_size_limit_is_413_on_the_page_too(settings):
    settings.AVATAR_MAX_UPLOAD_BYTES = 1000
    client = signed_in_page_client("en")
    with (FIXTURES / "portrait.jpg").open("rb") as f:
        page = client.post("/upload", {"image": f})
    assert page.status_code == 413
    assert "The photo is too large" in page.content.decode()
    assert Photo.objects.count() == 0


def test_someone_elses_picture_is_404_on_the_pages_as_in_the_api(packs):
    alice = new_guest()
    _, _, output = store_picture(alice)
    mallory = signed_in_page_client("en")
    assert mallory.get(f"/results/{output.id}").status_code == 404
    assert mallory.post(f"/results/{output.id}/delete").status_code == 404
    assert mallory.post(f"/results/{output.id}/share").status_code == 404
    assert [o["id"] for o in alice.get("/outputs").json()["outputs"]] == [str(output.id)]


def test_erasing_an_account_deletes_every_file_under_its_prefix_even_ones_no_row_names(packs):
    api = new_guest()
    _, job, _ = store_picture(api)
    user_id = job.user_id
    # A picture a worker wrote after its row was gone (a crash or a race with the erasure).
    stray = default_storage.save(f"{user_prefix(user_id)}jobs/{job.id}/7.webp", ContentFile(b"late"))
    assert default_storage.exists(stray)

    assert api.delete("/me").status_code == 204

    assert not default_storage.exists(stray)
    assert not default_storage.exists(user_prefix(user_id).rstrip("/"))
