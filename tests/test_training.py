"""Training a style pack: `manage.py train_pack`, chunks on the `train` queue, a real worker.

Tiny runs on the demo model (64-pixel pictures, a few steps, chunks of two). Moments that
matter are made deterministic with hold files, never by racing the clock: inside
``worker.hold_jobs()`` a chunk waits after each step (its heartbeat goes on); while
``<hold>.chunk`` exists a chunk waits before claiming its run, that is between two chunks.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from avatarapp.celery import app, train_queue
from avatarapp.jobs.models import Job
from avatarapp.packs.models import StylePack
from avatarapp.training.models import TrainingRun
from tests.conftest import WorkerProcess, database_url_for_tests
from tests.helpers import FIXTURES, new_guest, wait_for_job, wait_until
from tests.test_photo_upload import png_bomb

pytestmark = pytest.mark.django_db(transaction=True)

CAPTION = "abstract watercolour style"
# One set of settings for every run here: the crash test's result must equal an uninterrupted run's.
SETTINGS = ["--steps", "6", "--chunk-steps", "2", "--rank", "4", "--learning-rate", "0.005",
            "--resolution", "64", "--seed", "11", "--base-family", "demo", "--caption", CAPTION]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Packs and training folders of this module's own, for the tests and their workers alike."""
    root = tmp_path_factory.mktemp("training")
    packs_dir, training_dir = root / "packs", root / "runs"
    shutil.copytree(settings.AVATAR_PACKS_DIR, packs_dir)  # the demo packs the `packs` fixture registers
    with override_settings(AVATAR_PACKS_DIR=packs_dir, AVATAR_TRAINING_DIR=training_dir):
        yield {"AVATAR_PACKS_DIR": str(packs_dir), "AVATAR_TRAINING_DIR": str(training_dir)}


@pytest.fixture
def pictures(tmp_path):
    """Three pictures (through the upload path's decoder, like any), one with its own caption."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("portrait.jpg", "selfie_wide.jpg", "portrait.png"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "portrait.txt").write_text(f"a face, {CAPTION}\n", encoding="utf-8")
    return folder


@pytest.fixture
def start_worker(dirs, tmp_path):
    """Start real workers (the reaper runs every second, a heartbeat is stale after 3 s)."""
    started: list[WorkerProcess] = []
    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(train_queue("demo"), durable=True)
        conn.default_channel.queue_purge(train_queue("demo"))

    def start(hold: bool = False) -> WorkerProcess:
        env = dict(os.environ, DATABASE_URL=database_url_for_tests(), **dirs, AVATAR_HEARTBEAT_TIMEOUT="3",
                   AVATAR_REAPER_INTERVAL="1", AVATAR_REQUEUE_AFTER="3",
                   AVATAR_BEAT_SCHEDULE=str(tmp_path / f"beat-{len(started)}"))
        worker = WorkerProcess(tmp_path / f"worker-{len(started)}.log", env, name=f"train{len(started)}")
        if hold:
            worker.hold_file.touch()  # before it is ready: its first chunk stops after one step
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.hold_file.with_suffix(".hold.chunk").unlink(missing_ok=True)
        worker.stop()


def kill(worker: WorkerProcess) -> None:
    os.killpg(worker.process.pid, signal.SIGKILL)  # the whole worker, as the OOM killer would
    worker.process.wait()


def latest_run() -> TrainingRun:
    return TrainingRun.objects.latest("created_at")


def run_after(predicate, what: str, timeout: float = 120) -> TrainingRun:
    """Wait until the latest run satisfies `predicate` (failing at once if it failed); return it."""
    def check() -> bool:
        run = TrainingRun.objects.order_by("-created_at").first()
        assert run is None or run.status != TrainingRun.Status.FAILED, run.error
        return run is not None and predicate(run)

    wait_until(check, timeout, what)
    return latest_run()


def train(pictures: Path, slug: str, *extra: str) -> str:
    out = io.StringIO()
    call_command("train_pack", "--images", str(pictures), "--slug", slug, *SETTINGS, *extra, stdout=out)
    return out.getvalue()


# --- Bad input --------------------------------------------------------------------------------


def hostile_folders(root: Path) -> dict[str, Path]:
    data = (FIXTURES / "portrait.jpg").read_bytes()
    cases = {
        "empty": {},
        "captions only": {"a.txt": b"a caption"},
        "svg with a script": {"x.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'},
        "html": {"page.jpg": b"<!doctype html><html><body>hello</body></html>"},
        "pdf": {"doc.pdf": b"%PDF-1.4 not a photo"},
        "empty file": {"zero.png": b""},
        "truncated jpeg": {"cut.jpg": data[: len(data) // 3]},
        "decompression bomb": {"bomb.png": png_bomb(30000, 30000)},
        "one bad among good": {"good.jpg": data, "readme.md": b"# notes"},
    }
    folders = {}
    for case, files in cases.items():
        folder = root / case.replace(" ", "-")
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_bytes(content)
        folders[case] = folder
    return folders


def test_bad_input_gets_a_clear_error_and_starts_no_run(dirs, tmp_path):
    expected = {
        "empty": "no pictures", "captions only": "no pictures", "svg with a script": "x.svg",
        "html": "page.jpg", "pdf": "doc.pdf", "empty file": "zero.png", "truncated jpeg": "cut.jpg",
        "decompression bomb": "too many pixels", "one bad among good": "readme.md",
    }
    for case, folder in hostile_folders(tmp_path).items():
        with pytest.raises(CommandError) as error:
            train(folder, "bad-input")
        assert expected[case] in str(error.value), (case, str(error.value))
    with pytest.raises(CommandError, match="is not a folder"):
        train(tmp_path / "missing", "bad-input")
    with pytest.raises(CommandError, match="resolution"):
        call_command("train_pack", "--images", str(tmp_path), "--slug", "x", "--resolution", "100",
                     "--base-family", "demo")
    assert not TrainingRun.objects.exists()
    assert not Path(dirs["AVATAR_TRAINING_DIR"]).exists() or not any(Path(dirs["AVATAR_TRAINING_DIR"]).iterdir())


def test_a_slug_already_installed_needs_replace(dirs, packs, pictures):
    with pytest.raises(CommandError, match="already installed"):
        train(pictures, "cinematic")
    assert not TrainingRun.objects.exists()


# --- A run through the real worker ----------------------------------------------------------


def in_thread(work) -> None:
    from django.db import connection

    try:
        work()
    finally:
        connection.close()  # this thread's own connection


def test_a_trained_pack_lowers_the_loss_changes_pictures_and_runs_jobs_between_chunks_once(
        dirs, packs, pictures, start_worker):
    worker = start_worker()
    api = new_guest()
    photo = api.upload_fixture("portrait.jpg").json()
    out = io.StringIO()
    with worker.hold_jobs():
        # The command waits for the run (its progress bar follows the row) in a thread of its own.
        command = threading.Thread(target=in_thread, args=(lambda: call_command(
            "train_pack", "--images", str(pictures), "--slug", "watercolour", *SETTINGS, stdout=out),))
        command.start()
        run = run_after(lambda r: r.current_step >= 1, "the first chunk's first step")
        assert run.status == TrainingRun.Status.RUNNING and run.step == 0
        job = api.post("/jobs", {"photo": photo["id"], "pack": "cinematic"}).json()
    command.join(180)
    assert not command.is_alive()
    run.refresh_from_db()
    job_row = Job.objects.get(id=job["id"])
    wait_until(lambda: Job.objects.get(id=job["id"]).status == Job.Status.SUCCEEDED, 60, "the job to finish")
    job_row.refresh_from_db()

    # The generation job ran between chunks: it started before the training run finished.
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert job_row.started_at < run.finished_at
    # Training lowered the loss on a fixed probe batch, and the command said so.
    assert run.final_loss < run.initial_loss
    assert len(run.losses) == 6 and run.step == 6
    assert "installed pack watercolour" in out.getvalue()
    # A complete pack, installed and registered at once.
    folder = Path(dirs["AVATAR_PACKS_DIR"]) / "watercolour"
    assert {p.name for p in folder.iterdir()} == {"pack.toml", "lora.safetensors"}
    pack = StylePack.objects.get(slug="watercolour")
    assert pack.enabled and pack.base_family == "demo" and pack.version == run.pack_version
    assert pack.names["en"] == "Watercolour" and CAPTION in pack.spec.prompt

    # The pack changes the pictures: same seed, same prompt, with and without it.
    from tests.engine_helpers import demo_engine
    from tests.engine_helpers import run as generate

    engine = demo_engine()
    engine.load_pack("watercolour", pack.version, folder, pack.spec.loras)
    with_pack, without = generate(engine, "watercolour", [5])[0], generate(engine, None, [5])[0]
    assert np.abs(with_pack - without).max() > 0

    # And the worker that trained it runs a job with it, without a restart.
    trained_job = api.post("/jobs", {"photo": photo["id"], "pack": "watercolour"})
    assert trained_job.status_code == 202, trained_job.content
    finished, _ = wait_for_job(api, trained_job.json()["id"], timeout=90)
    assert finished["status"] == "succeeded", finished
    assert len(finished["outputs"]) == 1

    # The messages of chunks already done arrive again (a broker redelivering): nothing changes.
    for step in (0, 2, 4):
        app.send_task("worker.tasks.train_chunk", args=[str(run.id), step], queue=train_queue("demo"))
    wait_until(lambda: worker.log_path.read_text().count("nothing to do for step") >= 3, 60,
               "the worker to take the repeated messages")
    again = TrainingRun.objects.get(id=run.id)
    assert (again.status, again.finished_at, again.checkpoint) == (run.status, run.finished_at, run.checkpoint)


def uninterrupted_lora(run: TrainingRun) -> dict[str, torch.Tensor]:
    """The run's LoRA trained in this process, all steps in one go, from the same staged pictures."""
    from tests.engine_helpers import demo_engine
    from worker.training import core

    engine = demo_engine()
    train_settings = core.TrainSettings.from_json(run.settings)
    samples = [core.Sample(run.folder / s["file"], s["caption"]) for s in run.samples]
    encoded = core.encode_samples(engine, samples, train_settings.resolution)
    with core.lora_unet(engine, train_settings) as unet:
        start = core.initial_checkpoint(unet, train_settings)
        return core.train_chunk(engine, unet, encoded, train_settings, start, run.total_steps).lora


def test_a_worker_killed_between_chunks_and_during_one_finishes_with_the_same_lora(
        dirs, packs, pictures, start_worker):
    first = start_worker()
    between = first.hold_file.with_suffix(".hold.chunk")
    with first.hold_jobs():
        train(pictures, "resumed", "--no-wait")
        run_after(lambda r: r.current_step >= 1, "the first chunk's first step")
        between.touch()  # the next chunk will wait before it claims the run
    wait_until(lambda: between.with_suffix(".chunk.waiting").exists(), 60, "the second chunk to wait")
    run = latest_run()
    assert run.status == TrainingRun.Status.QUEUED and run.step == 2  # between chunks: checkpoint 2 saved
    kill(first)

    # A new worker gets the lost message from the reaper, and is killed during its chunk.
    second = start_worker(hold=True)
    run = run_after(lambda r: r.status == TrainingRun.Status.RUNNING and r.current_step >= 3,
                    "the resumed chunk's first step")
    assert run.step == 2 and run.worker and run.attempts == 1
    kill(second)

    # The third one is handed that chunk again (its heartbeat went stale) and finishes the run.
    start_worker()
    run = run_after(lambda r: r.status == TrainingRun.Status.SUCCEEDED, "the run to finish", timeout=180)
    assert run.step == 6 and len(run.losses) == 6
    assert StylePack.objects.get(slug="resumed").version == run.pack_version

    from worker.training.core import load_checkpoint

    resumed = load_checkpoint(Path(run.checkpoint)).lora
    reference = uninterrupted_lora(run)
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-5, atol=1e-6)
    assert any(bool(reference[key].abs().sum() > 0) for key in reference if "lora_B" in key)


# --- The admin --------------------------------------------------------------------------------


def test_the_admin_starts_a_run_refuses_bad_input_and_shows_progress(dirs, pictures, tmp_path):
    from django.test import Client

    from avatarapp.accounts.models import User

    staff = Client()
    staff.force_login(User.objects.create_superuser("ops@example.in", "Ops-training-" + "x9Q!" * 4))
    assert staff.get("/admin/training/trainingrun/add/").status_code == 200
    form = {"images": str(tmp_path / "nothing-here"), "slug": "from-admin", "caption": CAPTION, "name": "",
            "description": "", "rank": 4, "steps": 6, "learning_rate": 0.005, "resolution": 64, "seed": 11,
            "batch_size": 1, "chunk_steps_": 2, "mixed_precision": "auto", "gradient_checkpointing": "on",
            "family": "demo"}
    refused = staff.post("/admin/training/trainingrun/add/", form)
    assert refused.status_code == 200 and b"is not a folder" in refused.content
    assert not TrainingRun.objects.exists()

    started = staff.post("/admin/training/trainingrun/add/", {**form, "images": str(pictures)})
    assert started.status_code == 302, started.content.decode()[-2000:]
    run = TrainingRun.objects.get()
    assert (run.slug, run.status, run.total_steps, run.chunk_steps, len(run.samples)) == (
        "from-admin", TrainingRun.Status.QUEUED, 6, 2, 3)
    assert run.settings["rank"] == 4 and run.name == "From Admin"
    TrainingRun.objects.filter(id=run.id).update(current_step=3, losses=[0.5, 0.4])
    page = staff.get(f"/admin/training/trainingrun/{run.id}/change/")
    assert page.status_code == 200
    assert b"step 3 of 6 (50%)" in page.content and b"0.4000" in page.content
    # The pack's name and description stay editable while it trains.
    edited = staff.post(f"/admin/training/trainingrun/{run.id}/change/", {"name": "Watercolour", "description": "Soft"})
    assert edited.status_code == 302
    run.refresh_from_db()
    assert (run.name, run.description, run.status) == ("Watercolour", "Soft", TrainingRun.Status.QUEUED)
    with app.connection_for_write() as conn:  # no worker here: its first chunk's message goes
        conn.default_channel.queue_purge(train_queue("demo"))
