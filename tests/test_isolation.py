"""One person's photos, jobs and pictures are invisible to everyone else."""

import pytest

from avatarapp.jobs.models import Output
from tests.helpers import Api, new_guest, store_picture

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_with_a_picture(packs):
    """Alice owns a photo, a finished job and its picture (stored the way a worker stores it)."""
    alice = new_guest()
    photo, job, output = store_picture(alice, "cinematic")
    return alice, photo["id"], str(job.id), str(output.id)


def test_bob_gets_404_for_everything_of_alices(alice_with_a_picture):
    alice, photo_id, job_id, output_id = alice_with_a_picture
    bob = new_guest()
    for path in [f"/photos/{photo_id}", f"/photos/{photo_id}/image", f"/jobs/{job_id}",
                 f"/outputs/{output_id}/image", f"/outputs/{output_id}/thumbnail"]:
        assert bob.get(path).status_code == 404, path
        assert alice.get(path).status_code == 200, path
    assert bob.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert bob.delete(f"/outputs/{output_id}").status_code == 404
    assert bob.delete(f"/photos/{photo_id}").status_code == 404
    assert bob.post(f"/outputs/{output_id}/shares").status_code == 404
    assert bob.get("/jobs").json()["jobs"] == []
    assert bob.get("/outputs").json()["outputs"] == []
    assert Output.objects.filter(id=output_id).exists()


def test_anonymous_api_requests_get_401(alice_with_a_picture):
    """Without a token or session the API says who is missing, the same way GET /me does."""
    _, photo_id, job_id, output_id = alice_with_a_picture
    anonymous = Api()
    for path in [f"/photos/{photo_id}", f"/jobs/{job_id}", "/jobs", "/outputs", "/me"]:
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "not_authenticated", path


def test_anonymous_visitors_get_404_for_private_picture_urls(alice_with_a_picture):
    """DESIGN.md: output and photo URLs are private; the owner can fetch them, anyone else gets 404."""
    _, photo_id, _, output_id = alice_with_a_picture
    anonymous = Api()
    for path in [f"/photos/{photo_id}/image", f"/outputs/{output_id}/image", f"/outputs/{output_id}/thumbnail"]:
        response = anonymous.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found", path


def test_stored_files_live_under_the_owners_prefix(alice_with_a_picture):
    alice, _, job_id, output_id = alice_with_a_picture
    user_id = alice.get("/me").json()["id"]
    output = Output.objects.get(id=output_id)
    assert output.storage_key == f"users/{user_id}/jobs/{job_id}/0.webp"
    assert output.thumbnail_key == f"users/{user_id}/jobs/{job_id}/0_thumb.webp"
