"""The S3 path: photos, pictures and cards in a bucket on a real S3-compatible server.

moto's server mode answers the S3 API over HTTP on a local port; django-storages
talks to it exactly as it would to AWS or MinIO. A real worker writes its
pictures there too.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.test import override_settings
from PIL import Image

from avatarapp.jobs.models import Job
from tests.conftest import WorkerProcess, database_url_for_tests
from tests.helpers import free_port, new_guest, purge_queue, wait_for_job, wait_until

BUCKET = "chhavi-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 30, f"moto's S3 server to listen on port {port}")
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.terminate()
    server.wait()


def s3_storages(endpoint: str) -> dict:
    from django.conf import settings

    return {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": endpoint, "access_key": "test", "secret_key": "test",
                        "region_name": "us-east-1", "default_acl": None, "querystring_auth": True,
                        "file_overwrite": True},
        },
    }


def keys(client) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


@pytest.mark.django_db
def test_photos_pictures_and_cards_live_in_the_bucket_and_go_when_deleted(s3_endpoint, packs):
    endpoint, client = s3_endpoint
    from worker.outputs import store_output

    with override_settings(STORAGES=s3_storages(endpoint)):
        api = new_guest()
        photo = api.upload_fixture().json()
        user_id = api.get("/me").json()["id"]
        photo_key = f"users/{user_id}/photos/{photo['id']}.jpg"
        assert photo_key in keys(client)
        served = api.client.get(photo["url"], headers=api.headers())
        assert Image.open(io.BytesIO(b"".join(served.streaming_content))).size == (512, 512)
        # The bucket is private: the object is not readable without credentials.
        anonymous = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                 config=Config(signature_version=UNSIGNED))
        with pytest.raises(ClientError):
            anonymous.get_object(Bucket=BUCKET, Key=photo_key)

        job = Job.objects.select_related("user", "pack").get(
            id=api.post("/jobs", {"photo": photo["id"], "pack": "avatar"}).json()["id"])
        output = store_output(job, 0, Image.new("RGB", (512, 512), (30, 60, 90)))
        assert {output.storage_key, output.thumbnail_key} <= keys(client)
        token = api.post(f"/outputs/{output.id}/shares").json()["token"]
        card = api.client.get(f"/s/{token}/card.jpg")
        assert card.status_code == 200 and Image.open(io.BytesIO(card.content)).size == (1200, 630)
        assert f"users/{user_id}/cards/{output.id}.jpg" in keys(client)

        assert api.delete(f"/shares/{token}").status_code == 204
        assert api.client.get(f"/s/{token}/card.jpg").status_code == 404
        assert f"users/{user_id}/cards/{output.id}.jpg" not in keys(client)
        assert api.delete("/me").status_code == 204
        assert not {k for k in keys(client) if k.startswith(f"users/{user_id}/")}


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_stores_its_pictures_in_the_bucket(s3_endpoint, packs, tmp_path):
    endpoint, client = s3_endpoint
    purge_queue()
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), AWS_STORAGE_BUCKET_NAME=BUCKET,
               AWS_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_S3_REGION_NAME="us-east-1", AVATAR_BEAT_SCHEDULE=str(tmp_path / "beat"))
    worker = WorkerProcess(tmp_path / "worker.log", env)
    try:
        worker.wait_ready()
        with override_settings(STORAGES=s3_storages(endpoint)):
            api = new_guest()
            photo = api.upload_fixture().json()
            created = api.post("/jobs", {"photo": photo["id"], "pack": "cinematic"}).json()
            job, _ = wait_for_job(api, created["id"])
            assert job["status"] == "succeeded", job
            user_id = api.get("/me").json()["id"]
            assert f"users/{user_id}/jobs/{created['id']}/0.webp" in keys(client)
            image = api.client.get(job["outputs"][0]["url"], headers=api.headers())
            side = min(512, settings.AVATAR_MAX_SIDE or 512)  # the pack's size, within the operator's cap
            assert Image.open(io.BytesIO(b"".join(image.streaming_content))).size == (side, side)
    finally:
        worker.stop()


@pytest.mark.django_db(transaction=True)
def test_the_beat_sweeps_expired_photos_and_orphans_from_the_bucket(s3_endpoint, packs, tmp_path):
    """Retention through the real beat and worker, on the S3 server: nothing expired stays."""
    from datetime import timedelta

    from django.utils import timezone

    from avatarapp.photos.models import Photo

    endpoint, client = s3_endpoint
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), AWS_STORAGE_BUCKET_NAME=BUCKET,
               AWS_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_S3_REGION_NAME="us-east-1", AVATAR_BEAT_SCHEDULE=str(tmp_path / "beat"),
               AVATAR_RETENTION_INTERVAL="1", AVATAR_ORPHAN_GRACE_MINUTES="0")
    with override_settings(STORAGES=s3_storages(endpoint)):
        api = new_guest()
        expired, kept = api.upload_fixture().json(), api.upload_fixture().json()
        user_id = api.get("/me").json()["id"]
        Photo.objects.filter(id=expired["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
        orphan = f"users/{user_id}/jobs/gone/0.webp"
        client.put_object(Bucket=BUCKET, Key=orphan, Body=b"left by a crash")
        worker = WorkerProcess(tmp_path / "worker.log", env)
        try:
            worker.wait_ready()
            wait_until(lambda: not Photo.objects.filter(id=expired["id"]).exists(), 60, "the expired photo to go")
            wait_until(lambda: orphan not in keys(client), 60, "the orphan file to go")
        finally:
            worker.stop()
        assert f"users/{user_id}/photos/{expired['id']}.jpg" not in keys(client)
        assert f"users/{user_id}/photos/{kept['id']}.jpg" in keys(client)
        assert Photo.objects.filter(id=kept["id"]).exists()
