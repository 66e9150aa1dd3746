"""An operator's real model: a worker on a folder with Stable Diffusion 1.5's exact dimensions.

No real weights exist here, so the folder has SD1.5's UNet, text encoder and VAE at their
real sizes with seeded random weights (bench/model_folders.py): the worker loads, routes
and runs it exactly as it would the real thing. It runs with the operator's CPU caps
(AVATAR_MAX_STEPS, AVATAR_MAX_SIDE) so a picture costs seconds on two cores.
"""

from __future__ import annotations

import io
import os
import socket

import pytest
from django.conf import settings
from PIL import Image

from avatarapp.celery import GENERATE_TASK, app, generation_queue
from avatarapp.jobs.models import Job
from avatarapp.ops.models import WorkerStatus
from avatarapp.packs.manifest import load_manifest
from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import install_shipped_packs, request_previews, sync_packs
from bench.model_folders import build_sd15_folder
from tests.conftest import ROOT, WorkerProcess, database_url_for_tests
from tests.helpers import new_guest, purge_queue, wait_for_job, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SHIPPED_SD15 = sorted(load_manifest(folder).slug for folder in (ROOT / "packs" / "sd15").iterdir())
CAPS = {"AVATAR_MAX_STEPS": "2", "AVATAR_MAX_SIDE": "128"}


@pytest.fixture(scope="module")
def sd15_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real worker whose AVATAR_BASE_MODEL is the SD1.5-architecture folder (built once, kept in var/)."""
    folder = build_sd15_folder(settings.VAR_DIR / "test-models" / "sd15-architecture",
                               tokenizer_from=settings.VAR_DIR / "models" / "demo")
    with django_db_blocker.unblock():
        purge_queue()
        env = dict(os.environ, DATABASE_URL=database_url_for_tests(), AVATAR_BASE_MODEL=str(folder), **CAPS)
    process = WorkerProcess(tmp_path_factory.mktemp("sd15") / "worker.log", env, name="sd15", beat=False)
    try:
        process.wait_ready(timeout=300)
        yield process
    finally:
        process.stop()


def register_all_packs() -> None:
    install_shipped_packs()
    sync_packs()


def worker_row(worker: WorkerProcess) -> WorkerStatus:
    """The worker's status row (written back by its heartbeat within seconds after a test flushed it)."""
    wait_until(lambda: WorkerStatus.objects.filter(hostname=worker.hostname).exists(), 60,
               f"the status row of {worker.hostname}")
    return WorkerStatus.objects.get(hostname=worker.hostname)


def ran_on(job_id: str, worker: WorkerProcess) -> bool:
    """Whether the job was claimed by one of this worker's processes."""
    pids = WorkerStatus.objects.filter(hostname=worker.hostname).values_list("pid", flat=True)
    return Job.objects.get(id=job_id).worker in {f"{socket.gethostname()}:{pid}" for pid in pids}


def test_every_sd15_pack_makes_a_picture_on_an_sd15_model_and_demo_packs_are_not_offered(sd15_worker, settings):
    settings.AVATAR_MAX_ACTIVE_JOBS = len(SHIPPED_SD15)  # one person asks for every style at once
    register_all_packs()
    row = worker_row(sd15_worker)
    assert (row.family, row.model_name) == ("sd15", "sd15-architecture")

    api = new_guest()
    offered = sorted(pack["slug"] for pack in api.get("/packs").json()["packs"])
    assert offered == SHIPPED_SD15, "only packs made for SD1.5 are offered beside an SD1.5 model"
    refused = api.post("/jobs", {"photo": api.upload_fixture("portrait.jpg").json()["id"], "pack": "cinematic"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "pack_unavailable"

    photo = api.upload_fixture("selfie_wide.jpg").json()["id"]
    jobs = []
    for slug in offered:
        response = api.post("/jobs", {"photo": photo, "pack": slug, "seed": 3})
        assert response.status_code == 202, response.content
        jobs.append(response.json()["id"])
    for job_id in jobs:
        job, _ = wait_for_job(api, job_id, timeout=180)
        assert job["status"] == "succeeded", job
        picture = api.client.get(job["outputs"][0]["url"], headers=api.headers())
        assert picture.status_code == 200
        image = Image.open(io.BytesIO(b"".join(picture.streaming_content)))
        assert max(image.size) == 128, "the operator's size cap applies"
    # Every pack the worker ran is resident on it, and it says so (at its next heartbeat).
    wait_until(lambda: set(worker_row(sd15_worker).packs) >= set(offered), 60,
               "the worker to publish the packs it holds")


def test_previews_are_rendered_by_the_worker_and_shown_instead_of_the_placeholder(sd15_worker):
    register_all_packs()
    worker_row(sd15_worker)
    api = new_guest()
    assert all(pack["preview_url"] is None for pack in api.get("/packs").json()["packs"]), "none is rendered yet"
    page = api.client.get("/")
    assert page.content.decode().count('class="preview-placeholder"') == len(SHIPPED_SD15)

    request_previews()
    wait_until(lambda: StylePack.objects.filter(slug__in=SHIPPED_SD15).exclude(preview_key="").count()
               == len(SHIPPED_SD15), 240, "the worker to render every SD1.5 pack's preview")
    for pack in api.get("/packs").json()["packs"]:
        response = api.client.get(pack["preview_url"])
        assert response.status_code == 200 and response["Content-Type"] == "image/webp"
        preview = Image.open(io.BytesIO(b"".join(response.streaming_content)))
        assert preview.size == (320, 320)
    assert 'class="preview-placeholder"' not in api.client.get("/").content.decode()


def test_each_job_runs_on_the_worker_of_its_packs_family(sd15_worker, worker):
    """Two workers of different families on one broker: demo jobs on the demo worker, SD1.5 jobs on the other."""
    register_all_packs()
    worker_row(sd15_worker)
    worker_row(worker)
    api = new_guest()
    offered = {pack["slug"] for pack in api.get("/packs").json()["packs"]}
    assert {"cinematic", "avatar"} | set(SHIPPED_SD15) <= offered

    photo = api.upload_fixture("portrait.jpg").json()["id"]
    sent = {slug: api.post("/jobs", {"photo": photo, "pack": slug}).json()["id"]
            for slug in ("cinematic", SHIPPED_SD15[0], "avatar", SHIPPED_SD15[1])}
    for job_id in sent.values():
        assert wait_for_job(api, job_id, timeout=180)[0]["status"] == "succeeded"
    for slug, job_id in sent.items():
        expected = worker if slug in ("cinematic", "avatar") else sd15_worker
        assert ran_on(job_id, expected), f"{slug} ran on {Job.objects.get(id=job_id).worker}"


def test_a_message_sent_to_the_wrong_familys_queue_reaches_the_right_worker(sd15_worker, worker):
    """A demo job whose message lands on the SD1.5 queue is passed on, not run there and not failed."""
    register_all_packs()
    worker_row(sd15_worker)
    worker_row(worker)
    api = new_guest()
    photo = api.upload_fixture("portrait.jpg").json()["id"]
    job = Job.objects.create(user_id=api.get("/me").json()["id"], photo_id=photo,
                             pack=StylePack.objects.get(slug="cinematic"), count=1, seed=5)
    app.send_task(GENERATE_TASK, args=[str(job.id)], queue=generation_queue("sd15"))
    assert wait_for_job(api, str(job.id), timeout=180)[0]["status"] == "succeeded"
    assert ran_on(str(job.id), worker)
