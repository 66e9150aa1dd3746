"""Rows to API dictionaries, in one place, so every endpoint shows a thing the same way.

Jobs are read as plain values in one query (no model instances): phones poll a job
every second while a picture is made, so that read is the API's hottest path, and
the list, the single job and the answer to a cancel all go through it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.urls import reverse

from avatarapp.accounts.models import User
from avatarapp.faces.detect import Box
from avatarapp.jobs.errors import job_error_message
from avatarapp.jobs.models import Job, Output, queue_position
from avatarapp.packs.models import StylePack
from avatarapp.photos.models import Photo


def photo_json(photo: Photo) -> dict[str, Any]:
    return {
        "id": photo.id,
        "url": reverse("api-v1:photo_image", kwargs={"photo_id": photo.id}),
        "width": photo.width,
        "height": photo.height,
        "expires_at": photo.expires_at,
        # Largest first; the first is the face the portrait is made of.
        "faces": [{"box": box_json(face), "chosen": n == 0} for n, face in enumerate(photo.face_boxes)],
        # The part of the photo a square portrait is made from (a pack of another shape frames the same face).
        "crop": box_json(photo.crop(1.0)),
    }


def box_json(box: Box) -> dict[str, int]:
    return {"x": box.left, "y": box.top, "width": box.width, "height": box.height}


def output_urls(output_id: uuid.UUID) -> tuple[str, str]:
    return (reverse("api-v1:output_image", kwargs={"output_id": output_id}),
            reverse("api-v1:output_thumbnail", kwargs={"output_id": output_id}))


def output_dict(output_id: uuid.UUID, job_id: uuid.UUID, width: int, height: int, content_type: str,
                created_at: Any, flagged: bool, likeness: float | None = None, face_found: bool | None = None,
                skin_tone_shift: float | None = None) -> dict[str, Any]:
    url, thumbnail_url = output_urls(output_id)
    return {"id": output_id, "job": job_id, "url": url, "thumbnail_url": thumbnail_url, "width": width,
            "height": height, "content_type": content_type, "created_at": created_at, "flagged": flagged,
            "likeness": likeness, "face_found": face_found, "skin_tone_shift": skin_tone_shift}


def output_json(output: Output) -> dict[str, Any]:
    return output_dict(output.id, output.job_id, output.width, output.height, output.content_type,
                       output.created_at, output.flagged, output.likeness, output.face_found,
                       output.skin_tone_shift)

def pack_json(pack: StylePack) -> dict[str, Any]:
    spec = pack.spec
    preview_url = None
    if pack.has_preview:  # the version in the address, so a new version's preview is not an old cached one
        preview_url = f'{reverse("pack_preview", kwargs={"slug": pack.slug})}?v={pack.version}'
    return {"slug": pack.slug, "name": pack.name, "description": pack.description, "preview_url": preview_url,
            "fast_preview": spec.fast is not None}


JOB_FIELDS = ("id", "status", "progress", "count", "seed", "preview", "created_at", "started_at", "finished_at",
              "error_code", "pack__slug")
OUTPUT_FIELDS = ("outputs__id", "outputs__index", "outputs__width", "outputs__height", "outputs__content_type",
                 "outputs__created_at", "outputs__flagged", "outputs__likeness", "outputs__face_found",
                 "outputs__skin_tone_shift")


def jobs_json(user: User, limit: int = 50) -> list[dict[str, Any]]:
    """The user's newest jobs (at most `limit`), with their outputs."""
    newest = list(Job.objects.filter(user=user).order_by("-created_at").values_list("id", flat=True)[:limit])
    return jobs_from_rows(Job.objects.filter(id__in=newest).order_by("-created_at")
                          .values_list(*JOB_FIELDS, *OUTPUT_FIELDS))


def job_json(user: User, job_id: uuid.UUID | str) -> dict[str, Any] | None:
    """One job, in a single filter with no ordering: the polled path keeps the ORM's work small."""
    found = jobs_from_rows(Job.objects.filter(id=job_id, user=user).values_list(*JOB_FIELDS, *OUTPUT_FIELDS))
    return found[0] if found else None


def jobs_from_rows(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows of a job joined with its outputs (one row per output, or one with NULLs), grouped per job."""
    n = len(JOB_FIELDS)
    by_job: dict[uuid.UUID, dict[str, Any]] = {}
    outputs: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    for row in rows:
        job = by_job.setdefault(row[0], dict(zip(JOB_FIELDS, row[:n], strict=True)))
        outputs.setdefault(job["id"], [])
        if row[n] is not None:
            outputs[job["id"]].append(row[n:])
    return [job_dict(job, outputs[job_id]) for job_id, job in by_job.items()]


def job_dict(job: dict[str, Any], output_rows: list[tuple]) -> dict[str, Any]:
    status = job["status"]
    code = job["error_code"] or "generation_failed"
    outputs = []
    # By index: the worker stores a job's pictures best first (most like the selfie).
    for output_id, _, *fields in sorted(output_rows, key=lambda r: r[1]):
        outputs.append(output_dict(output_id, job["id"], *fields))
    return {
        "id": job["id"],
        "status": status,
        "progress": round(job["progress"], 3),
        "queue_position": queue_position(status, job["id"]),
        "pack": job["pack__slug"],
        "count": job["count"],
        "seed": job["seed"],
        "preview": job["preview"],
        "created_at": job["created_at"],
        "started_at": job["started_at"],
        "finished_at": job["finished_at"],
        "error": {"code": code, "message": job_error_message(code)} if status == Job.Status.FAILED else None,
        "outputs": outputs,
    }

