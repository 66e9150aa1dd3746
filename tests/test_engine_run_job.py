"""run_job: the request comes from the pack's typed spec; out of memory, cancel and mode limits end jobs right."""

import threading
from types import SimpleNamespace

import pytest
from django.test import override_settings
from PIL import Image

import worker.run_job
from avatarapp.jobs.models import Job
from avatarapp.packs.models import StylePack
from tests.engine_helpers import demo_engine
from tests.helpers import new_guest, purge_queue
from worker.run_job import build_request, run_job

pytestmark = pytest.mark.django_db


def request_for(pack: StylePack, preview: bool):
    job = SimpleNamespace(id="job-1")
    photo = Image.new("RGB", (64, 64))
    return build_request(pack, preview, [(job, 7), (job, 8)], {"job-1": photo})


@override_settings(AVATAR_MAX_SIDE=0)  # no operator's cap: the pack's own size
def test_a_full_picture_uses_the_packs_recommended_settings(packs):
    pack = StylePack.objects.get(slug="avatar")
    request = request_for(pack, preview=False)
    assert (request.steps, request.guidance, request.strength, request.scheduler) == (8, 5.0, 0.6, "")
    assert (request.width, request.height, request.seeds) == (512, 512, [7, 8])
    assert request.prompt == pack.spec.prompt.replace("{subject}", "portrait of a person")
    assert request.negative_prompt == pack.spec.negative_prompt != ""


def test_a_preview_runs_the_fast_tables_steps_with_its_sampler(packs):
    request = request_for(StylePack.objects.get(slug="avatar"), preview=True)
    # 7 steps at strength 0.6 denoise the 4 that [fast] asks for.
    assert (request.steps, request.guidance, request.strength, request.scheduler) == (7, 1.0, 0.6, "lcm")


def test_a_preview_uses_the_fast_tables_own_strength(packs):
    pack = StylePack.objects.get(slug="avatar")
    pack.manifest = {**pack.manifest, "fast": {**pack.manifest["fast"], "strength": 0.5}}
    request = request_for(pack, preview=True)
    assert (request.steps, request.strength) == (8, 0.5)


class StandInEngine:
    """The warm engine's place in run_job, for what does not need pixels: it records each batch's
    size, runs out of memory above `fits` pictures, and runs two steps through `on_step`."""

    family = "demo"
    loaded_likeness: list[str] = []  # no likeness models here

    def __init__(self, fits: int = 4, during_first_step=None):
        self.lock = threading.Lock()
        self.fits = fits
        self.during_first_step = during_first_step
        self.batches: list[int] = []
        self.steps_run: list[int] = []

    def switch_pack(self, slug: str | None, fast: bool = False, likeness=None) -> None:
        pass

    def generate(self, request, on_step=None) -> list[Image.Image]:
        self.batches.append(len(request.seeds))
        if len(request.seeds) > self.fits:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        for step in (1, 2):
            self.steps_run.append(step)
            if step == 1 and self.during_first_step:
                self.during_first_step()
            if on_step(step, 2) is False:
                break
        return [Image.new("RGB", (request.width, request.height), (seed % 256, 0, 0)) for seed in request.seeds]


@pytest.fixture
def api(packs):
    purge_queue()
    yield new_guest()
    purge_queue()


def create_job(api, **fields) -> str:
    photo = api.upload_fixture().json()["id"]
    response = api.post("/jobs", {"photo": photo, "pack": "avatar", **fields})
    assert response.status_code == 202, response.content
    return response.json()["id"]


def use_engine(monkeypatch, engine) -> None:
    monkeypatch.setattr(worker.run_job, "get_engine", lambda: engine)
    monkeypatch.setattr(worker.run_job, "ensure_pack_loaded", lambda engine, pack: None)


def test_out_of_memory_retries_at_half_the_batch_until_the_pictures_fit(api, monkeypatch, settings):
    settings.AVATAR_MAX_BATCH = 4
    engine = StandInEngine(fits=1)
    use_engine(monkeypatch, engine)
    job_id = create_job(api, count=4, seed=10)

    assert run_job(job_id) == "done"
    assert engine.batches == [4, 2, 1, 1, 1, 1]
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and len(job["outputs"]) == 4


def test_out_of_memory_at_one_picture_fails_the_job_with_its_reason(api, monkeypatch, settings):
    settings.AVATAR_MAX_BATCH = 2
    use_engine(monkeypatch, StandInEngine(fits=0))
    job_id = create_job(api, count=2)

    assert run_job(job_id) == "failed"
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "out_of_memory"


def test_a_cancel_during_a_step_stops_the_loop_at_that_step_and_stores_nothing(api, monkeypatch):
    job_id = create_job(api)
    engine = StandInEngine(during_first_step=lambda: api.post(f"/jobs/{job_id}/cancel"))
    use_engine(monkeypatch, engine)

    assert run_job(job_id) == "canceled"
    assert engine.steps_run == [1]
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["outputs"] == []


def test_a_preview_that_compile_mode_cannot_run_fails_with_the_reason(api, monkeypatch):
    engine = demo_engine(lora_mode="hotswap", max_lora_rank=8)
    monkeypatch.setattr(worker.run_job, "get_engine", lambda: engine)
    job_id = create_job(api, preview=True)

    assert run_job(job_id) == "failed"
    assert api.get(f"/jobs/{job_id}").json()["error"]["code"] == "generation_failed"
    # The user reads a localised apology; the operator's reason is on the row.
    assert "quick preview needs a speed LoRA" in Job.objects.get(id=job_id).error_message
    assert run_job(create_job(api)) == "done"  # the pack's full picture still runs
