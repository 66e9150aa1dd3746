"""Rows to API dictionaries. Kept in one place so every endpoint shows a job the same way."""

from __future__ import annotations

from django.urls import reverse

from avatarapp.jobs.errors import job_error_message
from avatarapp.jobs.models import Job, Output
from avatarapp.packs.models import StylePack
from avatarapp.photos.models import Photo


def photo_json(photo: Photo) -> dict:
    return {
        "id": photo.id,
        "url": reverse("api-v1:photo_image", kwargs={"photo_id": photo.id}),
        "width": photo.width,
        "height": photo.height,
        "expires_at": photo.expires_at,
    }


def output_json(output: Output) -> dict:
    return {
        "id": output.id,
        "job": output.job_id,
        "url": reverse("api-v1:output_image", kwargs={"output_id": output.id}),
        "thumbnail_url": reverse("api-v1:output_thumbnail", kwargs={"output_id": output.id}),
        "width": output.width,
        "height": output.height,
        "content_type": output.content_type,
        "created_at": output.created_at,
    }


def job_json(job: Job) -> dict:
    error = None
    if job.status == Job.Status.FAILED:
        code = job.error_code or "generation_failed"
        error = {"code": code, "message": job_error_message(code)}
    return {
        "id": job.id,
        "status": job.status,
        "progress": round(job.progress, 3),
        "queue_position": job.queue_position(),
        "pack": job.pack.slug,
        "count": job.count,
        "seed": job.seed,
        "preview": job.preview,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": error,
        "outputs": [output_json(o) for o in sorted(job.outputs.all(), key=lambda o: o.index)],
    }


def pack_json(pack: StylePack) -> dict:
    preview_url = reverse("pack_preview", kwargs={"slug": pack.slug}) if pack.manifest.get("preview") else None
    return {"slug": pack.slug, "name": pack.name, "description": pack.description, "preview_url": preview_url,
            "fast_preview": bool(pack.manifest.get("fast"))}
