"""A person can take their data out, and erase it all."""

import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from avatarapp.accounts.models import User
from avatarapp.jobs.models import Job, Output
from avatarapp.photos.models import Photo
from avatarapp.sharing.models import Report, Share
from tests.helpers import new_guest, store_picture

pytestmark = pytest.mark.django_db


@pytest.fixture
def guest_with_everything(packs):
    api = new_guest()
    photo, job, output = store_picture(api)
    token = api.post(f"/outputs/{output.id}/shares").json()["token"]
    api.client.get(f"/s/{token}/card.jpg")  # renders the card file too
    return api, photo, job, output, token


def test_the_export_holds_the_summary_photos_pictures_and_shares(guest_with_everything):
    api, photo, job, output, token = guest_with_everything
    response = api.get("/me/export")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))  # streamed from a file
    summary = json.loads(archive.read("chhavi.json"))
    assert summary["photos"][0]["id"] == photo["id"]
    assert summary["jobs"][0]["outputs"][0]["id"] == str(output.id)
    [share] = summary["jobs"][0]["outputs"][0]["shares"]
    assert share["url"].endswith(f"/s/{token}") and share["views"] == 0 and share["expires_at"] is None
    assert [e["kind"] for e in summary["consent_history"]] == ["granted"]
    assert Image.open(io.BytesIO(archive.read(f"photos/{photo['id']}.jpg"))).size == (512, 512)
    assert Image.open(io.BytesIO(archive.read(f"outputs/{output.id}.webp"))).format == "WEBP"


def test_erasing_the_account_removes_every_row_and_file(guest_with_everything):
    api, photo, job, output, token = guest_with_everything
    user_id = api.get("/me").json()["id"]
    keys = [Photo.objects.get(id=photo["id"]).storage_key, output.storage_key, output.thumbnail_key,
            f"users/{user_id}/cards/{output.id}.jpg"]
    assert all(default_storage.exists(k) for k in keys)

    assert api.delete("/me").status_code == 204

    assert not User.objects.filter(id=user_id).exists()
    assert not Photo.objects.exists() and not Job.objects.exists() and not Output.objects.exists()
    assert not Share.objects.exists()
    assert not any(default_storage.exists(k) for k in keys)
    assert api.get("/me").status_code == 401
    assert api.client.get(f"/s/{token}").status_code == 404


def test_erasure_keeps_reports_for_moderation_without_what_ties_them_to_the_person(guest_with_everything):
    api, _, _, output, token = guest_with_everything
    assert api.client.post(f"/s/{token}/report", {"reason": "offensive", "details": "rude"}).status_code == 302
    assert api.delete("/me").status_code == 204
    [report] = Report.objects.all()
    assert (report.reason, report.details, report.output_id, report.share_token) == ("offensive", "rude", None, "")


def test_erasure_ends_the_persons_sessions_too(packs):
    from django.contrib.sessions.models import Session
    from django.test import Client

    from avatarapp.actions.accounts import do_erase_user

    client = Client()
    assert client.post("/consent", {"adult": "yes", "agree": "yes"}).status_code == 302
    other = Client()
    assert other.post("/consent", {"adult": "yes", "agree": "yes"}).status_code == 302
    assert Session.objects.count() == 2
    do_erase_user(User.objects.get(id=client.session["_auth_user_id"]))
    assert Session.objects.count() == 1  # the other person stays signed in


def test_deleting_one_picture_removes_its_files_and_links(guest_with_everything):
    api, _, _, output, token = guest_with_everything
    assert api.delete(f"/outputs/{output.id}").status_code == 204
    assert not default_storage.exists(output.storage_key)
    assert not default_storage.exists(output.thumbnail_key)
    assert api.client.get(f"/s/{token}").status_code == 404
    assert api.delete(f"/outputs/{output.id}").status_code == 404
