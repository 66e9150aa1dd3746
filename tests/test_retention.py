"""Retention that deletes: expired photos, expired share links and their cards, orphan files."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from avatarapp.actions.retention import sweep
from avatarapp.jobs.models import Job
from avatarapp.lib.storage_keys import card_key, user_prefix
from avatarapp.photos.models import Photo
from avatarapp.sharing.models import Share
from tests.helpers import new_guest, store_picture, wait_until

pytestmark = pytest.mark.django_db


def expire(photo_id: str) -> str:
    Photo.objects.filter(id=photo_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    return Photo.objects.get(id=photo_id).storage_key


def test_an_expired_photo_is_deleted_row_and_file():
    api = new_guest()
    kept = api.upload_fixture().json()
    expired = api.upload_fixture().json()
    key = expire(expired["id"])

    report = sweep()

    assert report.photos == 1
    assert not Photo.objects.filter(id=expired["id"]).exists()
    assert not default_storage.exists(key)
    assert Photo.objects.filter(id=kept["id"]).exists()


def test_a_photo_a_queued_job_needs_is_kept_until_the_job_ends(packs):
    api = new_guest()
    photo = api.upload_fixture().json()
    job = api.post("/jobs", {"photo": photo["id"], "pack": "avatar"}).json()
    key = expire(photo["id"])

    assert sweep().photos == 0
    assert default_storage.exists(key)

    Job.objects.filter(id=job["id"]).update(status=Job.Status.SUCCEEDED)
    assert sweep().photos == 1
    assert not default_storage.exists(key)


def test_the_owner_can_still_delete_an_expired_photo():
    api = new_guest()
    photo = api.upload_fixture().json()
    key = expire(photo["id"])
    assert api.get(f"/photos/{photo['id']}").status_code == 404  # no longer usable...
    assert api.delete(f"/photos/{photo['id']}").status_code == 204  # ...but still the owner's to delete
    assert not default_storage.exists(key)


def test_an_expired_share_link_and_its_card_are_deleted(packs):
    api = new_guest()
    _, _, output = store_picture(api)
    token = api.post(f"/outputs/{output.id}/shares", {"expires_in": 60}).json()["token"]
    assert api.client.get(f"/s/{token}/card.jpg").status_code == 200
    card = card_key(output.user_id, output.id)
    assert default_storage.exists(card)
    Share.objects.filter(token=token).update(expires_at=timezone.now() - timedelta(seconds=1))

    report = sweep()

    assert (report.shares, report.cards) == (1, 1)
    assert not Share.objects.filter(token=token).exists()
    assert not default_storage.exists(card)
    assert default_storage.exists(output.storage_key)  # the picture itself stays the owner's


def test_files_no_row_owns_are_swept_once_past_the_grace_period(packs, settings):
    api = new_guest()
    _, job, output = store_picture(api)
    stray = default_storage.save(f"{user_prefix(job.user_id)}jobs/{job.id}/9.webp", ContentFile(b"left behind"))
    gone_user = default_storage.save(f"{user_prefix('00000000-0000-0000-0000-000000000000')}photos/x.jpg",
                                     ContentFile(b"an erased user's"))

    sweep()  # too new: it may belong to an upload still in flight
    assert default_storage.exists(stray) and default_storage.exists(gone_user)

    settings.AVATAR_ORPHAN_GRACE_MINUTES = 0
    report = sweep(timezone.now() + timedelta(seconds=5))
    assert report.orphans >= 2  # (files earlier tests left behind, whose rows were rolled back, go too)
    assert not default_storage.exists(stray) and not default_storage.exists(gone_user)
    assert default_storage.exists(output.storage_key) and default_storage.exists(output.thumbnail_key)


@pytest.mark.django_db(transaction=True)
def test_the_real_beat_deletes_an_expired_photo_from_local_disk(tmp_path):
    """The schedule itself: a worker with --beat, a one-second retention interval, local storage."""
    import os

    from tests.conftest import WorkerProcess, database_url_for_tests

    api = new_guest()
    photo = api.upload_fixture().json()
    key = expire(photo["id"])
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), AVATAR_BEAT_SCHEDULE=str(tmp_path / "beat"),
               AVATAR_RETENTION_INTERVAL="1")
    worker = WorkerProcess(tmp_path / "worker.log", env)
    try:
        worker.wait_ready()
        wait_until(lambda: not Photo.objects.filter(id=photo["id"]).exists(), 60, "the sweep to delete the photo")
    finally:
        worker.stop()
    assert not default_storage.exists(key)


def test_tokens_idle_past_their_life_are_deleted(settings):
    from avatarapp.accounts.models import ApiToken, User

    user = User.objects.create_guest()
    ApiToken.issue(user)
    ApiToken.issue(user)
    old = ApiToken.objects.filter(user=user).first()
    ApiToken.objects.filter(id=old.id).update(
        last_used_at=timezone.now() - timedelta(days=settings.AVATAR_TOKEN_IDLE_DAYS, minutes=1))
    assert sweep().tokens == 1
    assert list(ApiToken.objects.filter(user=user)) != [] and not ApiToken.objects.filter(id=old.id).exists()
