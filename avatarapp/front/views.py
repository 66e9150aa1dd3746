"""The site's own pages: landing → consent → upload → style → progress → gallery → result.

Every step works as a plain HTML form without JavaScript; static/js/app.js adds
the photo preview, live progress and the share sheet on top.
"""

from __future__ import annotations

import mimetypes
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from avatarapp.accounts.actions import do_record_consent
from avatarapp.accounts.consent import consent_text, consent_version, has_consented
from avatarapp.accounts.models import User
from avatarapp.jobs import actions as job_actions
from avatarapp.jobs.errors import job_error_message
from avatarapp.jobs.models import Job, Output
from avatarapp.outputs import do_delete_output
from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import pack_folder
from avatarapp.photos.actions import do_upload_photo
from avatarapp.photos.models import Photo
from avatarapp.photos.normalize import UploadRejected
from avatarapp.ratelimit import allow, client_ip
from avatarapp.sharing.actions import do_create_share


def consented_user_required(view):
    """Pages past consent need a (guest) user who accepted the current text."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated or not has_consented(request.user):
            return redirect(f"{reverse('consent')}?next={request.path}")
        return view(request, *args, **kwargs)

    return wrapper


def landing(request: HttpRequest) -> HttpResponse:
    packs = StylePack.objects.filter(enabled=True)
    return render(request, "front/landing.html", {"packs": packs})


def consent(request: HttpRequest) -> HttpResponse:
    error = None
    if request.method == "POST":
        if request.POST.get("adult") != "yes" or request.POST.get("agree") != "yes":
            error = _("Please tick both boxes to go on.")
        else:
            user = request.user
            if not user.is_authenticated:
                if not allow("guest", client_ip(request), settings.AVATAR_RATE_GUESTS_PER_HOUR):
                    return render(request, "front/error.html",
                                  {"message": _("Too many requests. Please wait a little and try again.")}, status=429)
                user = User.objects.create_guest(language=(get_language() or "en"))
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            do_record_consent(user, consent_version())
            next_url = request.POST.get("next", "")
            return redirect(next_url if next_url.startswith("/") and not next_url.startswith("//") else "upload")
    return render(request, "front/consent.html", {
        "consent_text": consent_text(),
        "error": error,
        "next": request.GET.get("next", request.POST.get("next", "")),
    }, status=400 if error else 200)


@consented_user_required
def upload(request: HttpRequest) -> HttpResponse:
    error = None
    if request.method == "POST":
        image = request.FILES.get("image")
        if image is None:
            error = _("Please choose a photo first.")
        elif image.size > settings.AVATAR_MAX_UPLOAD_BYTES:
            error = _("The photo is too large. Please choose one under %(mb)d MB.") % {
                "mb": settings.AVATAR_MAX_UPLOAD_BYTES // (1024 * 1024)}
        elif not allow("upload", str(request.user.id), settings.AVATAR_RATE_UPLOADS_PER_HOUR):
            error = _("Too many uploads. Please wait a little and try again.")
        else:
            try:
                photo = do_upload_photo(request.user, image.read())
                return redirect("choose_pack", photo_id=photo.id)
            except UploadRejected as e:
                error = e.message
    return render(request, "front/upload.html", {"error": error}, status=400 if error else 200)


@consented_user_required
def choose_pack(request: HttpRequest, photo_id) -> HttpResponse:
    photo = get_object_or_404(Photo, id=photo_id, user=request.user, expires_at__gt=timezone.now())
    packs = StylePack.objects.filter(enabled=True)
    error = None
    if request.method == "POST":
        pack = packs.filter(slug=request.POST.get("pack", "")).first()
        if pack is None:
            error = _("Please choose a style.")
        else:
            try:
                job = job_actions.do_create_job(request.user, photo, pack, count=1, seed=None)
                return redirect("job_progress", job_id=job.id)
            except job_actions.QuotaExceeded:
                error = _("You have made as many pictures as you can for today. Please come back tomorrow.")
            except job_actions.QueueUnavailable:
                error = _("We cannot take new pictures right now. Please try again in a minute.")
    return render(request, "front/choose_pack.html", {
        "photo": photo,
        "packs": packs,
        "error": error,
        "photo_url": reverse("api-v1:photo_image", kwargs={"photo_id": photo.id}),
    }, status=400 if error else 200)


@consented_user_required
def job_progress(request: HttpRequest, job_id) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("pack"), id=job_id, user=request.user)
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
def cancel_job(request: HttpRequest, job_id) -> HttpResponse:
    job = get_object_or_404(Job, id=job_id, user=request.user)
    try:
        job_actions.do_cancel_job(job)
    except job_actions.JobNotCancellable:
        pass  # Finished in the meantime: the progress page shows the outcome.
    return redirect("job_progress", job_id=job.id)


@consented_user_required
def gallery(request: HttpRequest) -> HttpResponse:
    outputs = Output.objects.filter(user=request.user).select_related("job__pack")[:100]
    active = Job.objects.filter(user=request.user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING])[:5]
    return render(request, "front/gallery.html", {"outputs": outputs, "active_jobs": active})


@consented_user_required
def result(request: HttpRequest, output_id) -> HttpResponse:
    output = get_object_or_404(Output.objects.select_related("job__pack"), id=output_id, user=request.user)
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
def share_result(request: HttpRequest, output_id) -> HttpResponse:
    output = get_object_or_404(Output, id=output_id, user=request.user)
    if not output.shares.exists():
        do_create_share(output, get_language() or "en", None)
    return redirect("result", output_id=output.id)


@require_POST
@consented_user_required
def delete_result(request: HttpRequest, output_id) -> HttpResponse:
    output = get_object_or_404(Output, id=output_id, user=request.user)
    do_delete_output(output)
    messages.success(request, _("The picture was deleted."))
    return redirect("gallery")


@cache_control(public=True, max_age=86400)
def pack_preview(request: HttpRequest, slug: str) -> FileResponse:
    pack = get_object_or_404(StylePack, slug=slug, enabled=True)
    name = pack.manifest.get("preview")
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


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return render(request, "front/error.html", {"message": _("This page does not exist.")}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return render(request, "front/error.html", {"message": _("Something went wrong on our side. Please try again.")}, status=500)
