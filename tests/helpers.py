"""Small helpers the tests share: an API client that speaks bearer tokens, and queue probes."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from django.test import Client

FIXTURES = Path(__file__).parent / "fixtures"


class Api:
    """Django's test client at /api/v1 with an optional bearer token."""

    def __init__(self, token: str | None = None, language: str | None = None):
        self.client = Client()
        self.token = token
        self.language = language

    def headers(self) -> dict:
        h = {}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if self.language:
            h["Accept-Language"] = self.language
        return h

    def get(self, path: str, **kw):
        return self.client.get(f"/api/v1{path}", headers=self.headers(), **kw)

    def delete(self, path: str):
        return self.client.delete(f"/api/v1{path}", headers=self.headers())

    def post(self, path: str, body=None, raw: str | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(f"/api/v1{path}", data=data, content_type="application/json", headers=self.headers())

    def upload(self, data: bytes, name: str = "photo.jpg"):
        from django.core.files.uploadedfile import SimpleUploadedFile

        return self.client.post(f"/api/v1/photos", {"image": SimpleUploadedFile(name, data)}, headers=self.headers())

    def upload_fixture(self, name: str = "portrait.jpg"):
        return self.upload((FIXTURES / name).read_bytes(), name)


def new_guest(language: str | None = None, consent: bool = True) -> Api:
    api = Api(language=language)
    response = api.post("/auth/guest")
    assert response.status_code == 201, response.content
    api.token = response.json()["token"]
    if consent:
        version = api.get("/consent").json()["version"]
        assert api.post("/me/consent", {"version": version, "adult": True}).status_code == 204
    return api


def queued_messages() -> int:
    """Messages waiting on the gpu queue of the configured broker."""
    from avatarapp.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare("gpu", passive=False, durable=True).message_count


def purge_queue() -> None:
    from avatarapp.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare("gpu", durable=True)
        conn.default_channel.queue_purge("gpu")


def wait_for_job(api: Api, job_id: str, timeout: float = 90, until=("succeeded", "failed", "canceled")) -> tuple[dict, list[float]]:
    """Poll the job until it reaches a final state; return it and the progress values seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/jobs/{job_id}").json()
        seen.append(job["progress"])
        if job["status"] in until:
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def store_picture(api: Api, pack: str = "avatar", image=None):
    """A finished job with one picture, stored exactly as the worker stores it (label,
    metadata, watermark), without waiting for a worker to denoise one."""
    from PIL import Image

    from avatarapp.jobs.models import Job
    from worker.outputs import store_output

    photo = api.upload_fixture().json()
    job_id = api.post("/jobs", {"photo": photo["id"], "pack": pack}).json()["id"]
    job = Job.objects.select_related("user", "pack").get(id=job_id)
    output = store_output(job, 0, image if image is not None else Image.new("RGB", (512, 512), (90, 140, 200)))
    Job.objects.filter(id=job_id).update(status=Job.Status.SUCCEEDED, progress=1.0)
    return photo, job, output


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
