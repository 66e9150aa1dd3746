"""The site's own pages: landing → consent → upload → style → progress → gallery → result.

Every step works as a plain HTML form without JavaScript; static/js/app.js adds
the photo preview, live progress and the share sheet on top.
"""

from __future__ import annotations

import mimetypes
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from avatarapp.accounts.consent import has_likeness_consent
from avatarapp.actions.errors import ActionError
from avatarapp.actions.jobs import do_cancel_job, do_create_job, get_own_job
from avatarapp.actions.likeness import ready_likeness
from avatarapp.actions.outputs import do_delete_output, get_own_output
from avatarapp.actions.photos import do_upload_photo, get_own_photo
from avatarapp.actions.shares import do_share_once
from avatarapp.front.requests import UserRequest, consented_user_required
from avatarapp.jobs.errors import job_error_message
from avatarapp.jobs.models import Job, Output
from avatarapp.lib.refusals import CSRF_FAILED
from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import pack_folder


def landing(request: HttpRequest) -> HttpResponse:
    packs = StylePack.objects.offered()
    return render(request, "front/landing.html", {"packs": packs})


@consented_user_required
def upload(request: UserRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            photo = do_upload_photo(request.user, request.FILES.get("image"))
        except ActionError as e:
            message = e.fields["image"] if e.fields and "image" in e.fields else e.message
            return render(request, "front/upload.html", {"error": message}, status=e.status)
        return redirect("choose_pack", photo_id=photo.id)
    return render(request, "front/upload.html", {"error": None})


@consented_user_required
def choose_pack(request: UserRequest, photo_id: UUID) -> HttpResponse:
    photo = get_own_photo(request.user, photo_id)
    packs = StylePack.objects.offered()
    # The person's likeness model can be used beside a style of its model family (the packs offered
    # are usually all of one family: the warm workers' model).
    families = sorted({pack.base_family for pack in packs})
    has_likeness = has_likeness_consent(request.user) and any(
        ready_likeness(request.user, family) is not None for family in families)
    error: str | Promise | None = None
    status = 200
    use_likeness = request.method == "POST" and request.POST.get("likeness") == "yes"
    if request.method == "POST":
        try:
            job = do_create_job(request.user, photo.id, request.POST.get("pack", ""), likeness=use_likeness)
            return redirect("job_progress", job_id=job.id)
        except ActionError as e:
            if e.status == 404:
                raise
            # A missing or unknown style is the form's own question; the rest say what happened.
            if e.code == "unknown_pack":
                error = _("Please choose a style.")
            elif e.fields and "likeness" in e.fields:
                error = e.fields["likeness"]
            else:
                error = e.message
            status = e.status
    return render(request, "front/choose_pack.html", {
        "photo": photo,
        "crop": photo.crop(1.0),
        "other_faces": photo.face_boxes[1:],  # dashed: seen, and not the one the portrait is made of
        "packs": packs,
        "has_likeness": has_likeness,
        "use_likeness": use_likeness,
        "error": error,
        "photo_url": reverse("api-v1:photo_image", kwargs={"photo_id": photo.id}),
    }, status=status)


@consented_user_required
def job_progress(request: UserRequest, job_id: UUID) -> HttpResponse:
    job = get_own_job(request.user, job_id)
    return render(request, "front/progress.html", {
        "job": job,
        "percent": int(round(job.progress * 100)),
        "queue_position": job.queue_position(),
        "outputs": job.outputs.order_by("index"),
        "error_message": job_error_message(job.error_code) if job.status == Job.Status.FAILED else "",
        "api_url": reverse("api-v1:get_job", kwargs={"job_id": job.id}),
    })


@require_POST
@consented_user_required
def cancel_job(request: UserRequest, job_id: UUID) -> HttpResponse:
    try:
        do_cancel_job(request.user, job_id)
    except ActionError as e:
        if e.code != "already_finished":
            raise
        # Finished in the meantime: the progress page shows the outcome.
    return redirect("job_progress", job_id=job_id)


@consented_user_required
def gallery(request: UserRequest) -> HttpResponse:
    outputs = Output.objects.filter(user=request.user).newest_jobs_best_first().select_related("job__pack")[:100]
    active = Job.objects.filter(user=request.user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING])[:5]
    return render(request, "front/gallery.html", {"outputs": outputs, "active_jobs": active})


@consented_user_required
def result(request: UserRequest, output_id: UUID) -> HttpResponse:
    output = get_own_output(request.user, output_id)
    share = output.shares.order_by("-created_at").first()
    share_url = settings.SITE_URL + reverse("share_page", kwargs={"token": share.token}) if share else ""
    return render(request, "front/result.html", {
        "output": output,
        "share": share,
        "share_url": share_url,
        "share_views": sum(s.views for s in output.shares.all()),
    })


@require_POST
@consented_user_required
def share_result(request: UserRequest, output_id: UUID) -> HttpResponse:
    do_share_once(request.user, output_id, (get_language() or "en").split("-")[0])
    return redirect("result", output_id=output_id)


@require_POST
@consented_user_required
def delete_result(request: UserRequest, output_id: UUID) -> HttpResponse:
    do_delete_output(request.user, output_id)
    messages.success(request, _("The picture was deleted."))
    return redirect("gallery")


@cache_control(public=True, max_age=86400)
def pack_preview(request: HttpRequest, slug: str) -> FileResponse:
    pack = get_object_or_404(StylePack, slug=slug, enabled=True)
    if pack.preview_key:
        # Rendered by a worker from the reference portrait, and kept in storage (a web server may
        # not share a disk with the workers).
        try:
            return FileResponse(default_storage.open(pack.preview_key, "rb"), content_type="image/webp")
        except (FileNotFoundError, OSError):
            raise Http404 from None
    name = pack.spec.preview
    if not name:
        raise Http404
    path = pack_folder(pack) / name
    if not path.is_file():
        raise Http404
    return FileResponse(path.open("rb"), content_type=mimetypes.guess_type(path.name)[0] or "image/webp")


def offline(request: HttpRequest) -> HttpResponse:
    return render(request, "front/offline.html")


@cache_control(no_cache=True)
def service_worker(request: HttpRequest) -> HttpResponse:
    response = render(request, "front/sw.js", content_type="application/javascript")
    response["Service-Worker-Allowed"] = "/"
    return response


@cache_control(public=True, max_age=86400)
def web_manifest(request: HttpRequest) -> HttpResponse:
    return render(request, "front/manifest.webmanifest", content_type="application/manifest+json")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "front/error.html", {"message": _("This page does not exist.")}, status=404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a stale or missing form token gets the error page in the person's language."""
    return render(request, "front/error.html", {"message": CSRF_FAILED}, status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    message = _("Something went wrong on our side. Please try again.")
    return render(request, "front/error.html", {"message": message}, status=500)
