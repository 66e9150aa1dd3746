"""Small helpers the tests share: an API client that speaks bearer tokens, queue probes, and
(re-exported from avatarapp.ops.processes, which the benchmarks use too) the process helpers."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from django.test import Client

# One way to start, wait for and stop a process, shared with `serve` and bench/.
from avatarapp.ops.processes import LoggedProcess, ProcessFailed, free_port  # noqa: F401

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

        return self.client.post("/api/v1/photos", {"image": SimpleUploadedFile(name, data)}, headers=self.headers())

    def upload_fixture(self, name: str = "portrait.jpg"):
        return self.upload((FIXTURES / name).read_bytes(), name)


# Addresses a page makes up itself and that never reach a network.
LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "chrome-extension")


def third_party_urls(urls, base_url: str) -> list[str]:
    """The URLs among `urls` that reach a host other than the site at `base_url`.

    Each is read the way a browser reads it on one of the site's pages: a relative URL stays
    on the site, but a protocol-relative one (`//cdn.example.com/x.js`, or `/\\cdn.example.com`,
    which browsers take for the same) goes to another host, and so does any scheme but the
    few a page makes up itself (data:, blob:, about:).
    """
    own = urlsplit(base_url)
    offenders = []
    for url in urls:
        # Browsers drop tabs and newlines anywhere in a URL, and read a backslash as a slash.
        cleaned = re.sub(r"[\t\n\r]", "", url).strip().replace("\\", "/")
        absolute = urlsplit(urljoin(base_url.rstrip("/") + "/", cleaned))
        if absolute.scheme in LOCAL_SCHEMES:
            continue
        if absolute.scheme not in ("http", "https", "ws", "wss") or absolute.netloc.lower() != own.netloc.lower():
            offenders.append(url)
    return offenders


class _LinkCollector(HTMLParser):
    ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "data", "srcset", "imagesrcset"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name not in self.ATTRIBUTES or value is None:
                continue
            if name.endswith("srcset"):  # "a.webp 1x, b.webp 2x"
                self.urls.extend(part.split()[0] for part in value.split(",") if part.strip())
            else:
                self.urls.append(value)


def urls_in_html(html: str) -> list[str]:
    """Every URL a page's markup points at (attribute values unescaped, as a browser sees them)."""
    collector = _LinkCollector()
    collector.feed(html)
    collector.close()
    return collector.urls


def new_guest(language: str | None = None, consent: bool = True) -> Api:
    api = Api(language=language)
    response = api.post("/auth/guest")
    assert response.status_code == 201, response.content
    api.token = response.json()["token"]
    if consent:
        version = api.get("/consent").json()["version"]
        assert api.post("/me/consent", {"version": version, "adult": True}).status_code == 204
    return api


def queued_messages(family: str = "demo") -> int:
    """Messages waiting on the generation queue of `family`'s workers, on the configured broker."""
    from avatarapp.celery import app, generation_queue

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(generation_queue(family), passive=False,
                                                  durable=True).message_count


def purge_queue(*families: str) -> None:
    """Empty the generation queues of `families` (every family's by default)."""
    from avatarapp.celery import app, generation_queue
    from avatarapp.packs.manifest import BASE_FAMILIES

    with app.connection_for_write() as conn:
        for family in families or BASE_FAMILIES:
            conn.default_channel.queue_declare(generation_queue(family), durable=True)
            conn.default_channel.queue_purge(generation_queue(family))


def wait_until(predicate, timeout: float, what: str) -> None:
    """Poll until predicate() is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_job(api: Api, job_id: str, timeout: float = 90,
                 until=("succeeded", "failed", "canceled")) -> tuple[dict, list[float]]:
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



def consenting_guest_with_photo(user=None, name: str = "portrait.jpg"):
    """A guest who accepted the consent text (or `user`), and a photo uploaded through the upload action."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from avatarapp.accounts.consent import consent_version
    from avatarapp.accounts.models import User
    from avatarapp.actions.accounts import do_give_consent
    from avatarapp.actions.photos import do_upload_photo

    user = user or User.objects.create_guest()
    if user.consent_version != consent_version():
        do_give_consent(user, consent_version(), adult=True)
    return user, do_upload_photo(user, SimpleUploadedFile(name, (FIXTURES / name).read_bytes()))


def store_output_for(job, image=None):
    """One picture for an existing job, stored as the worker stores it, and the job marked done."""
    from PIL import Image

    from avatarapp.jobs.models import Job
    from worker.outputs import store_output

    job = Job.objects.select_related("user", "pack").get(id=job.id)
    output = store_output(job, 0, image if image is not None else Image.new("RGB", (512, 512), (90, 140, 200)))
    Job.objects.filter(id=job.id).update(status=Job.Status.SUCCEEDED, progress=1.0)
    return output


def picture_for_the_latest_guest() -> str:
    """A finished picture for the guest a browser test just created, stored as the worker stores it."""
    from PIL import Image

    from avatarapp.accounts.models import User
    from avatarapp.jobs.models import Job
    from avatarapp.packs.models import StylePack
    from worker.outputs import store_output

    user, photo = consenting_guest_with_photo(User.objects.filter(is_guest=True).latest("date_joined"))
    job = Job.objects.create(user=user, photo=photo, pack=StylePack.objects.get(slug="avatar"), seed=1,
                             status=Job.Status.SUCCEEDED, progress=1.0)
    return str(store_output(job, 0, Image.new("RGB", (512, 512), (200, 120, 80))).id)
