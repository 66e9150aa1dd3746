"""A job's pictures are listed best first (most like the selfie), in the API and the gallery."""

import pytest
from django.test import Client
from PIL import Image

from avatarapp.jobs.models import Job
from tests.helpers import new_guest
from worker.outputs import store_output

pytestmark = pytest.mark.django_db


def test_the_api_and_the_gallery_list_a_jobs_best_picture_first(packs):
    api = new_guest()
    photo = api.upload_fixture().json()
    job_id = api.post("/jobs", {"photo": photo["id"], "pack": "avatar", "count": 3}).json()["id"]
    job = Job.objects.select_related("user", "pack").get(id=job_id)
    # As the worker stores them: in rank order, one row after the other.
    for index, (likeness, colour) in enumerate([(0.91, (200, 0, 0)), (0.74, (0, 200, 0)), (None, (0, 0, 200))]):
        store_output(job, index, Image.new("RGB", (64, 64), colour), likeness=likeness,
                     face_found=likeness is not None, skin_tone_shift=0.5 if likeness else None)
    Job.objects.filter(id=job_id).update(status=Job.Status.SUCCEEDED, progress=1.0)

    listed = api.get("/outputs").json()["outputs"]
    assert [o["likeness"] for o in listed] == [0.91, 0.74, None]
    assert [o["face_found"] for o in listed] == [True, True, False]
    from_job = api.get(f"/jobs/{job_id}").json()["outputs"]
    assert [o["id"] for o in from_job] == [o["id"] for o in listed]

    client = Client()
    client.force_login(job.user)
    gallery = client.get("/gallery").content.decode()
    positions = [gallery.index(o["id"]) for o in listed]
    assert positions == sorted(positions)
