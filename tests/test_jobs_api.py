"""Creating, listing and cancelling jobs through the API; bad input queues nothing."""

import pytest
from django.test import override_settings

from avatarapp.jobs.models import Job
from tests.helpers import new_guest, purge_queue, queued_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(packs):
    purge_queue()
    return new_guest()


@pytest.fixture
def photo_id(api):
    return api.upload_fixture().json()["id"]


def test_a_job_is_queued_with_its_position_and_one_message(api, photo_id):
    response = api.post("/jobs", {"photo": photo_id, "pack": "avatar", "count": 2, "seed": 5})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["queue_position"] == 1
    assert queued_messages() == 1
    job = api.get(f"/jobs/{body['id']}").json()
    assert job["pack"] == "avatar" and job["count"] == 2 and job["seed"] == 5
    assert job["progress"] == 0 and job["outputs"] == [] and job["error"] is None
    second = api.post("/jobs", {"photo": photo_id, "pack": "avatar"}).json()
    assert second["queue_position"] == 2
    assert [j["id"] for j in api.get("/jobs").json()["jobs"]] == [second["id"], body["id"]]


@pytest.mark.parametrize("body, field", [
    ({"pack": "no-such-pack"}, "pack"),
    ({"count": 0}, "count"),
    ({"count": 99}, "count"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"count": "many"}, "count"),
    ({"photo": None}, "photo"),
    ({"photo": "not-a-uuid"}, "photo"),
])
def test_bad_job_fields_are_a_400_that_queues_nothing(api, photo_id, body, field):
    payload = {"photo": photo_id, "pack": "cinematic", **body}
    response = api.post("/jobs", payload)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"]
    assert Job.objects.count() == 0
    assert queued_messages() == 0


def test_a_missing_photo_field_is_a_400(api):
    response = api.post("/jobs", {"pack": "cinematic"})
    assert response.status_code == 400
    assert "photo" in response.json()["error"]["fields"]
    assert queued_messages() == 0


def test_a_photo_that_does_not_exist_is_a_404(api):
    response = api.post("/jobs", {"photo": "00000000-0000-4000-8000-000000000000", "pack": "cinematic"})
    assert response.status_code == 404
    assert Job.objects.count() == 0 and queued_messages() == 0


def test_someone_elses_photo_is_a_404(api, photo_id):
    stranger = new_guest()
    response = stranger.post("/jobs", {"photo": photo_id, "pack": "cinematic"})
    assert response.status_code == 404
    assert Job.objects.count() == 0 and queued_messages() == 0


@pytest.mark.parametrize("raw, code", [
    ("{not json", "malformed_request"),  # not JSON at all
    ("[1, 2]", "invalid_fields"),  # JSON, but not the object the fields live in
    ('"text"', "invalid_fields"),
    ("", "invalid_fields"),  # no body: every required field is missing
])
def test_malformed_json_is_a_json_400(api, raw, code):
    response = api.post("/jobs", raw=raw)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    assert Job.objects.count() == 0 and queued_messages() == 0


@override_settings(AVATAR_GUEST_DAILY_QUOTA=3)
def test_the_daily_quota_is_enforced_in_images_not_jobs(api, photo_id):
    assert api.post("/jobs", {"photo": photo_id, "pack": "avatar", "count": 2}).status_code == 202
    response = api.post("/jobs", {"photo": photo_id, "pack": "avatar", "count": 2})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert api.get("/me").json()["quota"] == {"used": 2, "limit": 3}
    assert queued_messages() == 1


def test_cancelling_a_queued_job_stops_it_and_frees_the_quota(api, photo_id):
    job = api.post("/jobs", {"photo": photo_id, "pack": "avatar", "count": 4}).json()
    response = api.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "canceled"
    assert api.get("/me").json()["quota"]["used"] == 0
    assert api.post(f"/jobs/{job['id']}/cancel").status_code == 409


def test_unknown_api_paths_and_methods_answer_in_json(api):
    response = api.get("/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = api.client.put("/api/v1/jobs", headers=api.headers())
    assert response.status_code == 405
    assert response.json()["error"]["code"]


def test_a_preview_needs_a_pack_with_a_fast_mode(api, photo_id):
    from avatarapp.packs.models import StylePack

    pack = StylePack.objects.get(slug="cinematic")
    pack.manifest = {**pack.manifest, "fast": None}
    pack.save()
    response = api.post("/jobs", {"photo": photo_id, "pack": "cinematic", "preview": True})
    assert response.status_code == 400
    assert "preview" in response.json()["error"]["fields"]
    assert api.post("/jobs", {"photo": photo_id, "pack": "avatar", "preview": True}).status_code == 202


def test_the_polled_job_read_matches_the_full_serialiser(api, photo_id):
    """GET /jobs/{id} takes a fast path; it must say exactly what the list endpoint says."""
    from tests.helpers import store_picture

    _, job, _ = store_picture(api, "avatar")
    Job.objects.filter(id=job.id).update(status=Job.Status.FAILED, error_code="out_of_memory")
    queued = api.post("/jobs", {"photo": photo_id, "pack": "cinematic", "count": 2}).json()
    listed = {j["id"]: j for j in api.get("/jobs").json()["jobs"]}
    for job_id in (str(job.id), queued["id"]):
        assert api.get(f"/jobs/{job_id}").json() == listed[job_id]
    assert listed[str(job.id)]["error"]["code"] == "out_of_memory"
    assert len(listed[str(job.id)]["outputs"]) == 1
