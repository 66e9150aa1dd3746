"""Celery tasks. Each receives ids (or nothing) and does only what is still missing."""

from __future__ import annotations

from dataclasses import asdict

from avatarapp.actions import retention
from avatarapp.celery import app
from worker.engine import get_engine
from worker.previews import render_missing_previews
from worker.provenance.card import make_card
from worker.reaper import reap_stale_jobs as reap
from worker.run_job import run_job


@app.task(name="worker.tasks.generate_job", ignore_result=True)
def generate_job(job_id: str) -> str:
    return run_job(job_id)


@app.task(name="worker.tasks.reap_stale_jobs", ignore_result=True)
def reap_stale_jobs() -> dict:
    return reap()


@app.task(name="worker.tasks.sweep_retention", ignore_result=True)
def sweep_retention() -> dict:
    """Delete expired photos, expired share links and their cards, and files no row owns."""
    return asdict(retention.sweep())


@app.task(name="worker.tasks.render_pack_previews", ignore_result=True)
def render_pack_previews() -> list[str]:
    """Render the previews this worker's model family still lacks (sent by each worker once it is warm)."""
    return render_missing_previews(get_engine())


@app.task(name="worker.tasks.train_chunk", ignore_result=True)
def train_chunk(run_id: str, step: int) -> str:
    """One chunk of a style pack's training run, from `step` (worker/training/chunks.py); queues the next."""
    from worker.training.chunks import run_chunk  # here, so this task stays one self-contained block

    return run_chunk(run_id, step)


@app.task(name="worker.tasks.make_share_card", ignore_result=True)
def make_share_card(output_id: str) -> bool:
    """The share card of an output whose card is missing: marked and C2PA-signed (see worker/provenance/card.py)."""
    return make_card(output_id)
