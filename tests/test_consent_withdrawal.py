"""Consent is as easy to withdraw as to give, and withdrawing it ends what it allowed."""

import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage

from avatarapp.photos.models import Photo
from tests.helpers import Api, new_guest

pytestmark = pytest.mark.django_db


def test_withdrawing_consent_cancels_queued_jobs_deletes_photos_and_blocks_uploads(packs):
    api = new_guest()
    photo = api.upload_fixture().json()
    key = Photo.objects.get(id=photo["id"]).storage_key
    job = api.post("/jobs", {"photo": photo["id"], "pack": "avatar"}).json()
    assert job["status"] == "queued"

    assert api.delete("/me/consent").status_code == 204

    assert api.get(f"/jobs/{job['id']}").json()["status"] == "canceled"
    assert not Photo.objects.filter(id=photo["id"]).exists()
    assert not default_storage.exists(key)
    assert api.get("/me").json()["consent_version"] is None
    refused = api.upload_fixture()
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "consent_required"
    assert api.post("/jobs", {"photo": photo["id"], "pack": "avatar"}).json()["error"]["code"] == "consent_required"


def test_consent_given_again_works_and_the_history_is_in_the_export(packs):
    api = new_guest()
    assert api.delete("/me/consent").status_code == 204
    assert api.post("/me/consent", {"version": 1, "adult": True}).status_code == 204
    assert api.upload_fixture().status_code == 201

    archive = zipfile.ZipFile(io.BytesIO(b"".join(api.get("/me/export").streaming_content)))
    history = json.loads(archive.read("chhavi.json"))["consent_history"]
    assert [(e["kind"], e["version"]) for e in history] == [("granted", 1), ("withdrawn", None), ("granted", 1)]


def test_withdrawing_needs_an_account():
    response = Api().delete("/me/consent")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
