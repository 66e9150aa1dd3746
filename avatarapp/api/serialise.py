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


JOB_FIELDS = ("id", "status", "progress", "count", "seed", "preview", "created_at", "started_at", "finished_at",
              "error_code", "pack__slug")
OUTPUT_FIELDS = ("outputs__id", "outputs__index", "outputs__width", "outputs__height", "outputs__content_type",
                 "outputs__created_at")


def job_json_by_id(job_id, user) -> dict | None:
    """job_json for one job, read in one query of plain values (no model instances).

    Phones poll this every second while a picture is made, so it is the API's hottest path;
    it returns exactly what job_json returns (tests compare them).
    """
    rows = list(Job.objects.filter(id=job_id, user=user).values_list(*JOB_FIELDS, *OUTPUT_FIELDS))
    if not rows:
        return None
    first = dict(zip(JOB_FIELDS, rows[0][:len(JOB_FIELDS)]))
    status = first["status"]
    code = first["error_code"] or "generation_failed"
    outputs = []
    for row in sorted((r for r in rows if r[len(JOB_FIELDS)] is not None), key=lambda r: r[len(JOB_FIELDS) + 1]):
        output_id, _, width, height, content_type, created_at = row[len(JOB_FIELDS):]
        outputs.append({
            "id": output_id, "job": first["id"], "url": f"/api/v1/outputs/{output_id}/image",
            "thumbnail_url": f"/api/v1/outputs/{output_id}/thumbnail", "width": width, "height": height,
            "content_type": content_type, "created_at": created_at,
        })
    queue_position = None
    if status == Job.Status.QUEUED:
        queue_position = Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=first["created_at"]).count() + 1
    return {
        "id": first["id"],
        "status": status,
        "progress": round(first["progress"], 3),
        "queue_position": queue_position,
        "pack": first["pack__slug"],
        "count": first["count"],
        "seed": first["seed"],
        "preview": first["preview"],
        "created_at": first["created_at"],
        "started_at": first["started_at"],
        "finished_at": first["finished_at"],
        "error": {"code": code, "message": job_error_message(code)} if status == Job.Status.FAILED else None,
        "outputs": outputs,
    }
