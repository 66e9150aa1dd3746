"""A person's likeness model: its consent, the refusals, training through the real worker, "me" beside
a style pack in every LoRA mode, and erasure.

Tiny runs on the demo model (64-pixel face crops, 4 steps in chunks of 2, 2 class pictures). A
second request while the run trains is made deterministic with the worker's hold file (a chunk
waits after each step while it exists), never by racing the clock.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import override_settings
from safetensors.torch import load_file

from avatarapp.accounts.models import ConsentEvent, User
from avatarapp.celery import app, train_queue
from avatarapp.jobs.models import Job
from avatarapp.lib.storage_keys import user_prefix
from avatarapp.training.models import TrainingRun
from tests.conftest import WorkerProcess, database_url_for_tests
from tests.engine_helpers import demo_engine, load_demo_packs, run
from tests.helpers import Api, new_guest, purge_queue, wait_for_job, wait_until
from worker.engine import EngineError

LIKENESS = {"AVATAR_LIKENESS_STEPS": "4", "AVATAR_LIKENESS_CHUNK_STEPS": "2", "AVATAR_LIKENESS_RANK": "4",
            "AVATAR_LIKENESS_LEARNING_RATE": "0.005", "AVATAR_LIKENESS_CLASS_PICTURES": "2",
            "AVATAR_LIKENESS_REPORT_PICTURES": "2"}
# The web side reads the same settings when it creates the run.
web_settings = override_settings(**{name: float(value) if "RATE" in name else int(value)
                                    for name, value in LIKENESS.items()})


def likeness_consent(api: Api) -> None:
    version = api.get("/likeness/consent").json()["version"]
    assert api.post("/me/likeness-consent", {"version": version}).status_code == 204


def selfies(api: Api, count: int, name: str = "portrait.jpg") -> list[str]:
    return [api.upload_fixture(name).json()["id"] for _ in range(count)]


# --- Two adapters at once, in every LoRA mode ---------------------------------------------------


@pytest.fixture(scope="module")
def face_lora():
    """A LoRA in diffusers' format for the demo UNet, standing in for a trained likeness model."""
    return load_file(str(Path(settings.AVATAR_PACKS_DIR) / "cinematic" / "cinematic.safetensors"))


@pytest.mark.django_db
def test_pack_and_likeness_are_both_applied_with_their_weights_in_active_and_fused_modes(face_lora):
    pictures = {}
    for mode in ("active", "fused"):
        engine = demo_engine(lora_mode=mode)
        load_demo_packs(engine, speed_lora=None)
        engine.load_likeness("me", lambda: face_lora)
        pictures[mode] = {
            "style": run(engine, "avatar", [4])[0],
            "me": run(engine, None, [4], likeness=("me", 1.0))[0],
            "both": run(engine, "avatar", [4], likeness=("me", 1.0))[0],
            "both, me weaker": run(engine, "avatar", [4], likeness=("me", 0.3))[0],
            "neither": run(engine, None, [4])[0],
        }
    active, fused = pictures["active"], pictures["fused"]
    for name in active:
        assert np.abs(active[name] - fused[name]).max() <= 1, name  # fused merges exactly what active applies
    names = list(active)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(active[a] - active[b]).max() > 8, f"{a} and {b} should differ"


@pytest.mark.django_db
def test_compile_mode_says_it_cannot_apply_a_likeness_model(face_lora):
    swapping = demo_engine(lora_mode="hotswap", max_lora_rank=8)
    with pytest.raises(EngineError, match="compile mode .* cannot be applied beside a style pack"):
        swapping.load_likeness("me", lambda: face_lora)
    with pytest.raises(EngineError, match="not loaded"):
        swapping.switch_pack(None, likeness=("me", 1.0))


# --- Refusals through the API -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_likeness_needs_its_own_consent_and_six_selfies_of_one_face(packs):
    anonymous = Api()
    assert anonymous.get("/likeness").status_code == 401
    assert anonymous.post("/likeness", {"photos": []}).status_code == 401

    api = new_guest(language="hi")
    ids = selfies(api, 6)
    refused = api.post("/likeness", {"photos": ids})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "likeness_consent_required"
    assert api.post("/me/likeness-consent", {"version": 999}).status_code == 400
    likeness_consent(api)
    user = User.objects.get(id=api.get("/me").json()["id"])
    assert user.likeness_consent_version == settings.AVATAR_LIKENESS_CONSENT_VERSION
    assert ConsentEvent.objects.filter(user=user, purpose="likeness", kind="granted").count() == 1

    too_few = api.post("/likeness", {"photos": ids[:5]})
    assert too_few.status_code == 400 and too_few.json()["error"]["code"] == "too_few_photos"
    assert "6" in too_few.json()["error"]["message"]
    group = api.upload_fixture("two_people.jpg").json()["id"]
    crowded = api.post("/likeness", {"photos": [*ids[:5], group]})
    assert crowded.status_code == 400 and crowded.json()["error"]["code"] == "not_one_face"
    stranger = new_guest()
    theirs = selfies(stranger, 1)
    assert api.post("/likeness", {"photos": [*ids[:5], *theirs]}).status_code == 404
    # A job cannot ask for a model the person does not have.
    job = api.post("/jobs", {"photo": ids[0], "pack": "avatar", "likeness": True})
    assert job.status_code == 400 and "likeness" in job.json()["error"]["fields"]
    assert not TrainingRun.objects.exists()
    assert not Job.objects.exists()


# --- Training through the real worker -----------------------------------------------------------


@pytest.fixture
def likeness_worker(packs, tmp_path):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(train_queue("demo"), durable=True)
        conn.default_channel.queue_purge(train_queue("demo"))
    purge_queue("demo")
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), AVATAR_TRAINING_DIR=str(tmp_path / "runs"),
               AVATAR_BEAT_SCHEDULE=str(tmp_path / "beat"), **LIKENESS)
    worker = WorkerProcess(tmp_path / "worker.log", env, name="likeness")
    with override_settings(AVATAR_TRAINING_DIR=tmp_path / "runs"), web_settings:
        try:
            worker.wait_ready()
            yield worker
        finally:
            worker.stop()


@pytest.mark.django_db(transaction=True)
def test_a_likeness_model_trains_is_private_combines_with_a_pack_and_goes_with_the_account(likeness_worker):
    api = new_guest()
    ids = selfies(api, 6)
    likeness_consent(api)
    with likeness_worker.hold_jobs():  # the first chunk waits after its first step
        started = api.post("/likeness", {"photos": ids})
        assert started.status_code == 202, started.content
        run_id = started.json()["id"]
        wait_until(lambda: TrainingRun.objects.get(id=run_id).current_step >= 1, 120, "the first step")
        again = api.post("/likeness", {"photos": ids})
        assert again.status_code == 409 and again.json()["error"]["code"] == "likeness_in_progress"
        midway = api.get(f"/likeness/{run_id}").json()
        assert midway["status"] == "running" and 0 < midway["progress"] < 1
    wait_until(lambda: TrainingRun.objects.get(id=run_id).finished, 180, "the likeness model")
    row = TrainingRun.objects.get(id=run_id)
    assert row.status == TrainingRun.Status.SUCCEEDED, row.error
    done = api.get(f"/likeness/{run_id}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    # Measured, not assumed: with and without the model (the demo model draws no faces, so the
    # numbers are null, and the report says how many faces were found).
    assert done["report"]["pictures"] == 2
    assert {"faces_found_with", "faces_found_without", "with_model", "without_model"} <= set(done["report"])
    # Stored privately under its owner; nothing of the face is left in the run's folder.
    assert row.lora_key.startswith(user_prefix(row.user_id)) and default_storage.exists(row.lora_key)
    assert not row.folder.exists()
    # Another person cannot see it, nor can anyone without a token.
    assert new_guest().get(f"/likeness/{run_id}").status_code == 404
    assert Api().get(f"/likeness/{run_id}").status_code == 401
    assert api.post("/likeness", {"photos": ids}).json()["error"]["code"] == "likeness_exists"

    # "Me" beside a style pack: the same photo, pack and seed, with and without the model.
    plain = api.post("/jobs", {"photo": ids[0], "pack": "avatar", "seed": 5}).json()
    with_me = api.post("/jobs", {"photo": ids[0], "pack": "avatar", "seed": 5, "likeness": True}).json()
    for job in (plain, with_me):
        finished, _ = wait_for_job(api, job["id"], timeout=120)
        assert finished["status"] == "succeeded", finished
    assert Job.objects.get(id=with_me["id"]).likeness_id == row.id
    assert pixels(api, plain["id"]).shape == pixels(api, with_me["id"]).shape
    assert np.abs(pixels(api, plain["id"]) - pixels(api, with_me["id"])).mean() > 1

    # Erasing the account leaves no file of the person's anywhere in storage.
    user_id = row.user_id
    assert api.delete("/me").status_code == 204
    assert not TrainingRun.objects.filter(id=run_id).exists()
    assert not default_storage.exists(row.lora_key)
    assert not (Path(settings.MEDIA_ROOT) / user_prefix(user_id)).exists()


def pixels(api: Api, job_id: str) -> np.ndarray:
    import io

    from PIL import Image

    output = api.get(f"/jobs/{job_id}").json()["outputs"][0]
    response = api.get(output["url"].removeprefix("/api/v1"))
    data = b"".join(response.streaming_content)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.mark.django_db(transaction=True)
def test_deleting_or_withdrawing_takes_the_model_away(packs, tmp_path):
    from django.core.files.base import ContentFile

    from avatarapp.lib.storage_keys import likeness_key

    api = new_guest()
    ids = selfies(api, 1)
    likeness_consent(api)
    user = User.objects.get(id=api.get("/me").json()["id"])

    def trained() -> TrainingRun:
        model = TrainingRun.objects.create(kind="likeness", user=user, slug="likeness", base_family="demo",
                                           status="succeeded", total_steps=1, step=1, samples=[])
        model.lora_key = default_storage.save(likeness_key(user.id, model.id), ContentFile(b"weights"))
        model.save()
        model.folder.mkdir(parents=True)
        return model

    with override_settings(AVATAR_TRAINING_DIR=tmp_path / "runs"):
        model = trained()
        queued = api.post("/jobs", {"photo": ids[0], "pack": "avatar", "likeness": True}).json()
        assert api.delete(f"/likeness/{model.id}").status_code == 204
        assert not default_storage.exists(model.lora_key) and not model.folder.exists()
        assert Job.objects.get(id=queued["id"]).status == Job.Status.CANCELED
        assert api.delete(f"/likeness/{model.id}").status_code == 404

        model = trained()
        assert api.delete("/me/likeness-consent").status_code == 204
        assert not TrainingRun.objects.filter(id=model.id).exists()
        assert not default_storage.exists(model.lora_key) and not model.folder.exists()
        refused = api.post("/jobs", {"photo": ids[0], "pack": "avatar", "likeness": True})
        assert refused.status_code == 403
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


@pytest.mark.django_db(transaction=True)
def test_a_person_may_start_only_so_many_likeness_models_a_day(packs, tmp_path):
    api = new_guest()
    ids = selfies(api, 6)
    likeness_consent(api)
    with override_settings(AVATAR_TRAINING_DIR=tmp_path / "runs", AVATAR_LIKENESS_STARTS_PER_DAY=1):
        first = api.post("/likeness", {"photos": ids})
        assert first.status_code == 202
        assert api.delete(f"/likeness/{first.json()['id']}").status_code == 204
        again = api.post("/likeness", {"photos": ids})
        assert again.status_code == 429 and again.json()["error"]["code"] == "rate_limited"
        assert "Retry-After" in again.headers
    assert not TrainingRun.objects.exists()
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(train_queue("demo"))


@pytest.mark.django_db
def test_a_worker_removes_the_folders_of_runs_that_have_gone(tmp_path):
    """Where only the workers mount AVATAR_TRAINING_DIR, the web side's clean-up cannot reach it."""
    import time
    import uuid

    from worker.training.chunks import ORPHAN_GRACE, remove_orphan_folders, run_chunk

    user = User.objects.create_guest()
    with override_settings(AVATAR_TRAINING_DIR=tmp_path):
        alive = TrainingRun.objects.create(kind="likeness", user=user, slug="likeness", base_family="demo",
                                           total_steps=1)
        alive.folder.mkdir()
        old_orphan, young_orphan, deleted = (tmp_path / str(uuid.uuid4()) for _ in range(3))
        for folder in (old_orphan, young_orphan, deleted):
            (folder / "images").mkdir(parents=True)
        long_ago = time.time() - ORPHAN_GRACE - 60
        os.utime(old_orphan, (long_ago, long_ago))
        os.utime(alive.folder, (long_ago, long_ago))
        (tmp_path / "notes.txt").write_text("not a run")
        assert remove_orphan_folders() == 1
        assert not old_orphan.exists() and young_orphan.exists() and alive.folder.exists()
        # The message of a run deleted between chunks removes that run's folder at once.
        assert run_chunk(deleted.name, 2) == "gone"
        assert not deleted.exists() and (tmp_path / "notes.txt").exists()
