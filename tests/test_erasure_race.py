"""Erasing an account while the worker is storing its pictures leaves nothing behind."""

import pytest
from django.core.files.storage import default_storage

from avatarapp.jobs.models import Job, Output
from avatarapp.lib.storage import keys_under
from avatarapp.lib.storage_keys import user_prefix
from tests.helpers import new_guest, wait_for_job, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_account_erased_between_denoising_and_storing_leaves_no_file_or_row(worker, packs):
    alice, bob = new_guest(), new_guest()
    photo = alice.upload_fixture().json()
    with worker.hold_before_storing():
        job = alice.post("/jobs", {"photo": photo["id"], "pack": "avatar", "count": 2}).json()
        user_id = Job.objects.get(id=job["id"]).user_id
        # Denoising is done and the rows were read; the worker now waits just before it stores.
        wait_until(worker.waiting_to_store, 90, "the worker to reach the point just before storing")
        assert alice.delete("/me").status_code == 204
        assert not Job.objects.filter(id=job["id"]).exists()
        # Bob's job queues behind: once it is done, the worker is past Alice's.
        marker = bob.post("/jobs", {"photo": bob.upload_fixture().json()["id"], "pack": "avatar"}).json()
    finished, _ = wait_for_job(bob, marker["id"])
    assert finished["status"] == "succeeded"

    assert keys_under(user_prefix(user_id)) == []
    assert not default_storage.exists(user_prefix(user_id).rstrip("/"))
    assert not Output.objects.filter(user_id=user_id).exists()
