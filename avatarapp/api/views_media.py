"""Packs, photos, jobs, outputs and shares: the path from a selfie to a picture."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Prefetch
from django.http import HttpRequest
from django.shortcuts import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import File, Router
from ninja.files import UploadedFile

from avatarapp.accounts.consent import has_consented
from avatarapp.api.errors import ApiError, not_found
from avatarapp.api.files import serve_private_file
from avatarapp.api.schemas import (
    ErrorBody, JobCreatedOut, JobIn, JobOut, JobsOut, OutputsOut, PacksOut, PhotoOut, ShareIn, ShareOut,
)
from avatarapp.api.serialise import job_json, job_json_by_id, output_json, pack_json, photo_json
from avatarapp.jobs import actions as job_actions
from avatarapp.jobs.models import Job, Output
from avatarapp.outputs import do_delete_output
from avatarapp.packs.models import StylePack
from avatarapp.photos.actions import do_delete_photo, do_upload_photo
from avatarapp.photos.models import Photo
from avatarapp.photos.normalize import UploadRejected
from avatarapp.ratelimit import allow
from avatarapp.sharing.actions import do_create_share, do_revoke_share
from avatarapp.sharing.models import Share

router = Router(tags=["media"])


def own_photo(request: HttpRequest, photo_id: UUID) -> Photo:
    photo = Photo.objects.filter(id=photo_id, user=request.auth, expires_at__gt=timezone.now()).first()
    if photo is None:
        raise ApiError(404, "not_found", _("Photo not found."))
    return photo


def own_job(request: HttpRequest, job_id: UUID) -> Job:
    # get() (no ORDER BY) and an unordered prefetch: job_json sorts the outputs by index
    # itself, and on this much-polled path the orderings are only extra work.
    try:
        return (
            Job.objects.select_related("pack")
            .prefetch_related(Prefetch("outputs", queryset=Output.objects.order_by()))
            .get(id=job_id, user=request.auth)
        )
    except Job.DoesNotExist:
        raise ApiError(404, "not_found", _("Job not found.")) from None


def own_output(request: HttpRequest, output_id: UUID) -> Output:
    output = Output.objects.filter(id=output_id, user=request.auth).first()
    if output is None:
        raise ApiError(404, "not_found", _("Picture not found."))
    return output


# --- Packs -------------------------------------------------------------------

@router.get("/packs", auth=None, response=PacksOut)
def list_packs(request: HttpRequest):
    return {"packs": [pack_json(p) for p in StylePack.objects.filter(enabled=True)]}


# --- Photos ------------------------------------------------------------------

@router.post("/photos", response={201: PhotoOut, 400: ErrorBody, 403: ErrorBody, 413: ErrorBody,
                                  415: ErrorBody, 429: ErrorBody})
def upload_photo(request: HttpRequest, image: File[UploadedFile]):
    user = request.auth
    if not has_consented(user):
        raise ApiError(403, "consent_required", _("Please read and accept the consent text before uploading."))
    if image.size > settings.AVATAR_MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", _("The photo is too large. Please choose one under %(mb)d MB.")
                       % {"mb": settings.AVATAR_MAX_UPLOAD_BYTES // (1024 * 1024)})
    if not allow("upload", str(user.id), settings.AVATAR_RATE_UPLOADS_PER_HOUR):
        raise ApiError(429, "rate_limited", _("Too many uploads. Please wait a little and try again."))
    try:
        photo = do_upload_photo(user, image.read())
    except UploadRejected as e:
        raise ApiError(e.status, e.code, e.message, reason=e.reason) from None
    return 201, photo_json(photo)


@router.get("/photos/{photo_id}", response={200: PhotoOut, 404: ErrorBody})
def get_photo(request: HttpRequest, photo_id: UUID):
    return photo_json(own_photo(request, photo_id))


@router.get("/photos/{photo_id}/image", url_name="photo_image", response={404: ErrorBody})
def photo_image(request: HttpRequest, photo_id: UUID):
    photo = own_photo(request, photo_id)
    return serve_private_file(photo.storage_key, photo.content_type)


@router.delete("/photos/{photo_id}", response={204: None, 404: ErrorBody})
def delete_photo(request: HttpRequest, photo_id: UUID):
    do_delete_photo(own_photo(request, photo_id))
    return 204, None


# --- Jobs --------------------------------------------------------------------

@router.post("/jobs", response={202: JobCreatedOut, 400: ErrorBody, 404: ErrorBody, 429: ErrorBody,
                                503: ErrorBody})
def create_job(request: HttpRequest, body: JobIn):
    pack = StylePack.objects.filter(slug=body.pack, enabled=True).first()
    if pack is None:
        raise ApiError(400, "unknown_pack", _("This style is not available."),
                       fields={"pack": _("Choose one of the available styles.")})
    if body.preview and not pack.manifest.get("fast"):
        raise ApiError(400, "invalid_fields", _("Please check the highlighted fields."),
                       fields={"preview": _("This style has no quick preview.")})
    photo = own_photo(request, body.photo)
    try:
        job = job_actions.do_create_job(request.auth, photo, pack, body.count, body.seed, body.preview)
    except job_actions.QuotaExceeded:
        raise ApiError(429, "quota_exceeded", _("You have made as many pictures as you can for today. Please come back tomorrow.")) from None
    except job_actions.QueueUnavailable:
        raise ApiError(503, "queue_unavailable", _("We cannot take new pictures right now. Please try again in a minute.")) from None
    return 202, {"id": job.id, "status": job.status, "queue_position": job.queue_position()}


@router.get("/jobs", response=JobsOut)
def list_jobs(request: HttpRequest):
    jobs = Job.objects.filter(user=request.auth).select_related("pack").prefetch_related("outputs")[:50]
    return {"jobs": [job_json(j) for j in jobs]}


@router.get("/jobs/{job_id}", response={200: JobOut, 404: ErrorBody})
def get_job(request: HttpRequest, job_id: UUID):
    job = job_json_by_id(job_id, request.auth)
    if job is None:
        raise ApiError(404, "not_found", _("Job not found."))
    return job


@router.post("/jobs/{job_id}/cancel", response={202: JobOut, 404: ErrorBody, 409: ErrorBody})
def cancel_job(request: HttpRequest, job_id: UUID):
    job = own_job(request, job_id)
    try:
        job = job_actions.do_cancel_job(job)
    except job_actions.JobNotCancellable:
        raise ApiError(409, "already_finished", _("This job has already finished.")) from None
    return 202, job_json(job)


# --- Outputs -----------------------------------------------------------------

@router.get("/outputs", response=OutputsOut)
def list_outputs(request: HttpRequest):
    return {"outputs": [output_json(o) for o in Output.objects.filter(user=request.auth)[:200]]}


@router.get("/outputs/{output_id}/image", url_name="output_image", response={404: ErrorBody})
def output_image(request: HttpRequest, output_id: UUID):
    output = own_output(request, output_id)
    return serve_private_file(output.storage_key, output.content_type)


@router.get("/outputs/{output_id}/thumbnail", url_name="output_thumbnail", response={404: ErrorBody})
def output_thumbnail(request: HttpRequest, output_id: UUID):
    output = own_output(request, output_id)
    return serve_private_file(output.thumbnail_key, "image/webp")


@router.delete("/outputs/{output_id}", response={204: None, 404: ErrorBody})
def delete_output(request: HttpRequest, output_id: UUID):
    do_delete_output(own_output(request, output_id))
    return 204, None


# --- Shares ------------------------------------------------------------------

@router.post("/outputs/{output_id}/shares", response={201: ShareOut, 400: ErrorBody, 404: ErrorBody})
def create_share(request: HttpRequest, output_id: UUID, body: ShareIn | None = None):
    output = own_output(request, output_id)
    expires_in = body.expires_in if body else None
    share = do_create_share(output, request.auth.language, timedelta(seconds=expires_in) if expires_in else None)
    url = settings.SITE_URL + reverse("share_page", kwargs={"token": share.token})
    return 201, {"token": share.token, "url": url, "expires_at": share.expires_at}


@router.delete("/shares/{token}", response={204: None, 404: ErrorBody})
def revoke_share(request: HttpRequest, token: str):
    share = Share.objects.filter(token=token, output__user=request.auth).first()
    if share is None:
        raise ApiError(404, "not_found", _("Share link not found."))
    do_revoke_share(share)
    return 204, None
