"""Celery tasks of the GPU queue. Each receives a job id and does only what is still missing."""

from __future__ import annotations

from avatarapp.celery import app
from worker.run_job import run_job


@app.task(name="worker.tasks.generate_job", ignore_result=True)
def generate_job(job_id: str) -> str:
    return run_job(job_id)
