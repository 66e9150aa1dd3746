"""Packs, photos, jobs, outputs and shares: the path from a selfie to a picture.

Every view here is a thin door: it calls an action (avatarapp/actions/) and shapes
the answer. The actions own the checks; an ActionError they raise becomes the JSON
error shape in api/main.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from ninja import File, Router
from ninja.files import UploadedFile

from avatarapp.actions import jobs as job_actions
from avatarapp.actions.errors import not_found
from avatarapp.actions.outputs import do_delete_output, get_own_output
from avatarapp.actions.photos import do_delete_photo, do_upload_photo, get_own_photo
from avatarapp.actions.shares import do_create_share, do_revoke_share
from avatarapp.api.auth import IMAGE_AUTH, ApiRequest, owner_or_none
from avatarapp.api.files import serve_private_file
from avatarapp.api.openapi import private_image
from avatarapp.api.schemas import (
    ErrorBody,
    Id,
    JobCreatedOut,
    JobIn,
    JobOut,
    JobsOut,
    OutputsOut,
    PacksOut,
    PhotoOut,
    ShareIn,
    ShareOut,
)
from avatarapp.api.serialise import job_json, jobs_json, output_json, pack_json, photo_json
from avatarapp.jobs.models import Output
from avatarapp.packs.models import StylePack

router = Router(tags=["media"])

# The new job's id, as the schema tells clients (and schemathesis's workflows) where it goes next.
links_to_the_job = {"responses": {202: {"links": {
    name: {"operationId": f"avatarapp_api_views_media_{view}", "parameters": {"job_id": "$response.body#/id"}}
    for name, view in (("GetJob", "get_job"), ("CancelJob", "cancel_job"))}}}}


# --- Packs -------------------------------------------------------------------

@router.get("/packs", auth=None, response=PacksOut)
def list_packs(request: HttpRequest) -> dict[str, Any]:
    return {"packs": [pack_json(p) for p in StylePack.objects.offered()]}


# --- Photos ------------------------------------------------------------------

@router.post("/photos", response={201: PhotoOut, 400: ErrorBody, 403: ErrorBody, 413: ErrorBody,
                                  415: ErrorBody, 429: ErrorBody},
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "properties": {"image": {"minLength": 1}}}}}}})  # an empty file is no photo
def upload_photo(request: ApiRequest, image: File[UploadedFile]) -> tuple[int, dict[str, Any]]:
    return 201, photo_json(do_upload_photo(request.auth, image))


@router.get("/photos/{photo_id}", response={200: PhotoOut, 404: ErrorBody})
def get_photo(request: ApiRequest, photo_id: Id) -> dict[str, Any]:
    return photo_json(get_own_photo(request.auth, photo_id))


@router.get("/photos/{photo_id}/image", url_name="photo_image", auth=IMAGE_AUTH, response={404: ErrorBody},
            openapi_extra=private_image("image/jpeg"))
def photo_image(request: HttpRequest, photo_id: Id) -> FileResponse:
    photo = get_own_photo(owner_or_none(request), photo_id)
    return serve_private_file(photo.storage_key, photo.content_type)


@router.delete("/photos/{photo_id}", response={204: None, 404: ErrorBody})
def delete_photo(request: ApiRequest, photo_id: Id) -> tuple[int, None]:
    do_delete_photo(request.auth, photo_id)
    return 204, None


# --- Jobs --------------------------------------------------------------------

@router.post("/jobs", response={202: JobCreatedOut, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody,
                                429: ErrorBody, 503: ErrorBody},
             openapi_extra=links_to_the_job)
def create_job(request: ApiRequest, body: JobIn) -> tuple[int, dict[str, Any]]:
    job = job_actions.do_create_job(request.auth, body.photo, body.pack, body.count, body.seed, body.preview,
                                   likeness=body.likeness)
    return 202, {"id": job.id, "status": job.status, "queue_position": job.queue_position()}


@router.get("/jobs", response=JobsOut)
def list_jobs(request: ApiRequest) -> dict[str, Any]:
    return {"jobs": jobs_json(request.auth)}


@router.get("/jobs/{job_id}", response={200: JobOut, 404: ErrorBody})
def get_job(request: ApiRequest, job_id: Id) -> dict[str, Any]:
    job = job_json(request.auth, job_id)
    if job is None:
        raise not_found(_("Job not found."))
    return job


@router.post("/jobs/{job_id}/cancel", response={202: JobOut, 404: ErrorBody, 409: ErrorBody})
def cancel_job(request: ApiRequest, job_id: Id) -> tuple[int, dict[str, Any] | None]:
    job = job_actions.do_cancel_job(request.auth, job_id)
    return 202, job_json(request.auth, job.id)


# --- Outputs -----------------------------------------------------------------

@router.get("/outputs", response=OutputsOut)
def list_outputs(request: ApiRequest) -> dict[str, Any]:
    outputs = Output.objects.filter(user=request.auth).newest_jobs_best_first()[:200]
    return {"outputs": [output_json(o) for o in outputs]}


@router.get("/outputs/{output_id}/image", url_name="output_image", auth=IMAGE_AUTH, response={404: ErrorBody},
            openapi_extra=private_image("image/webp"))
def output_image(request: HttpRequest, output_id: Id) -> FileResponse:
    output = get_own_output(owner_or_none(request), output_id)
    return serve_private_file(output.storage_key, output.content_type)


@router.get("/outputs/{output_id}/thumbnail", url_name="output_thumbnail", auth=IMAGE_AUTH,
            response={404: ErrorBody}, openapi_extra=private_image("image/webp"))
def output_thumbnail(request: HttpRequest, output_id: Id) -> FileResponse:
    output = get_own_output(owner_or_none(request), output_id)
    return serve_private_file(output.thumbnail_key, "image/webp")


@router.delete("/outputs/{output_id}", response={204: None, 404: ErrorBody})
def delete_output(request: ApiRequest, output_id: Id) -> tuple[int, None]:
    do_delete_output(request.auth, output_id)
    return 204, None


# --- Shares ------------------------------------------------------------------

@router.post("/outputs/{output_id}/shares", response={201: ShareOut, 400: ErrorBody, 404: ErrorBody})
def create_share(request: ApiRequest, output_id: Id, body: ShareIn | None = None) -> tuple[int, dict[str, Any]]:
    expires_in = timedelta(seconds=body.expires_in) if body and body.expires_in else None
    share = do_create_share(request.auth, output_id, request.auth.language, expires_in)
    url = settings.SITE_URL + reverse("share_page", kwargs={"token": share.token})
    return 201, {"token": share.token, "url": url, "expires_at": share.expires_at}


@router.delete("/shares/{token}", response={204: None, 404: ErrorBody})
def revoke_share(request: ApiRequest, token: str) -> tuple[int, None]:
    do_revoke_share(request.auth, token)
    return 204, None
