"""The "Your likeness model" page: its own consent, the selfies, training progress, the result, deletion.

One page shows the person's state (no consent yet → consent; no model → selfies to choose;
training → progress; ready → what it does; failed → try again), and each change is a plain
POST to a small view here that calls the same action as the API (avatarapp/actions/likeness.py),
then shows the page again. It works without JavaScript: while a model trains, the page
refreshes itself.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from avatarapp.accounts.consent import (
    has_consented,
    has_likeness_consent,
    likeness_consent_text,
    likeness_consent_version,
)
from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError
from avatarapp.actions.likeness import (
    do_delete_likeness,
    do_give_likeness_consent,
    do_start_likeness,
    do_withdraw_likeness_consent,
    likeness_runs,
)
from avatarapp.actions.photos import do_upload_photo
from avatarapp.front.requests import UserRequest, signed_in_required
from avatarapp.photos.models import Photo
from avatarapp.training.models import TrainingRun

# While a model trains, the page reloads itself this often (seconds): training takes minutes.
REFRESH_SECONDS = 10


def report_sentences(report: dict[str, Any]) -> list[str]:
    """The likeness report in plain words, a whole sentence for each case (what was not measured says so)."""
    with_model, without_model = report.get("with_model"), report.get("without_model")
    if with_model is not None and without_model is not None:
        lines = [_("Test pictures made with your model looked like you %(with)d out of 100 "
                   "(without it: %(without)d out of 100).")
                 % {"with": round(with_model * 100), "without": round(without_model * 100)}]
    elif with_model is not None:
        lines = [_("Test pictures made with your model looked like you %(with)d out of 100 (without it: "
                   "could not be measured).") % {"with": round(with_model * 100)}]
    else:
        lines = [_("How much pictures made with your model look like you could not be measured.")]
    count, found_with, found_without = (report.get("pictures"), report.get("faces_found_with"),
                                        report.get("faces_found_without"))
    if count and found_with is not None and found_without is not None:
        lines.append(_("A face was found in %(with)d of %(count)d test pictures made with your model "
                       "(without it: %(without)d of %(count)d).")
                     % {"with": found_with, "without": found_without, "count": count})
    return lines


def selfie_choice(user: User, chosen: set[str] | None) -> dict[str, Any]:
    """The person's photos still kept: those showing exactly one face can be chosen, the rest say why not."""
    usable, unusable = [], []
    for photo in Photo.objects.filter(user=user, expires_at__gt=timezone.now()).order_by("-created_at"):
        faces = len(photo.faces)
        if faces == 1:
            usable.append(photo)
        elif faces == 0:
            unusable.append((photo, _("We found no face in this photo.")))
        else:
            unusable.append((photo, _("There is more than one face in this photo. A likeness model needs selfies "
                                      "of you alone.")))
    high = settings.AVATAR_LIKENESS_MAX_PHOTOS
    if chosen is None:  # the newest ones, as many as a model takes
        chosen = {str(photo.id) for photo in usable[:high]}
    return {
        "usable": [(photo, str(photo.id) in chosen) for photo in usable],
        "unusable": unusable,
        "missing": max(0, settings.AVATAR_LIKENESS_MIN_PHOTOS - len(usable)),
    }


def render_page(request: UserRequest, status: int = 200, chosen: set[str] | None = None,
                **extra: Any) -> HttpResponse:
    user = request.user
    run = likeness_runs(user).order_by("-created_at").first()
    context: dict[str, Any] = {
        "has_consent": has_likeness_consent(user),
        "has_photo_consent": has_consented(user),
        "consent_text": likeness_consent_text(),
        "consent_version": likeness_consent_version(),
        "run": run,
        "min_photos": settings.AVATAR_LIKENESS_MIN_PHOTOS,
        "max_photos": settings.AVATAR_LIKENESS_MAX_PHOTOS,
        "refresh_seconds": REFRESH_SECONDS,
        "consent_error": None,
        "upload_error": None,
        "refused_files": [],
        "kept_files": 0,
        "start_error": None,
    }
    if run is not None:
        context["training"] = run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)
        context["step"] = max(run.step, run.current_step)
        context["percent"] = round(run.progress * 100)
        if run.status == TrainingRun.Status.SUCCEEDED:
            context["report_lines"] = report_sentences(run.report or {})
    elif context["has_consent"]:
        context.update(selfie_choice(user, chosen))
    context.update(extra)
    return render(request, "front/likeness.html", context, status=status)


@never_cache
@signed_in_required
def likeness(request: UserRequest) -> HttpResponse:
    return render_page(request)


@require_POST
@signed_in_required
def give_likeness_consent(request: UserRequest) -> HttpResponse:
    if request.POST.get("agree") != "yes":
        return render_page(request, status=400, consent_error=_("Please tick the box to agree."))
    try:
        # The version of the text the person read: if it changed since, they are asked to read it again.
        version = int(request.POST.get("version", ""))
    except ValueError:
        version = 0
    try:
        do_give_likeness_consent(request.user, version)
    except ActionError as e:
        return render_page(request, status=e.status, consent_error=e.message)
    return redirect("likeness")


@require_POST
@signed_in_required
def withdraw_likeness_consent(request: UserRequest) -> HttpResponse:
    do_withdraw_likeness_consent(request.user)
    messages.success(request, _("Consent withdrawn. Your likeness model was deleted."))
    return redirect("likeness")


@require_POST
@signed_in_required
def upload_selfies(request: UserRequest) -> HttpResponse:
    """Each file through the upload action on its own: a refused one is named with the reason, the rest kept."""
    if not has_likeness_consent(request.user):
        return redirect("likeness")  # the page asks for the consent first
    if not has_consented(request.user):
        return render_page(request, status=403, upload_error=_("Please read and accept the consent text for "
                                                               "photos before uploading."))
    files = request.FILES.getlist("images")
    if not files:
        return render_page(request, status=400, upload_error=_("Please choose your selfies first."))
    high = settings.AVATAR_LIKENESS_MAX_PHOTOS
    refused: list[tuple[str, str]] = []
    kept = 0
    for upload in files[:high]:
        try:
            do_upload_photo(request.user, upload)
            kept += 1
        except ActionError as e:
            refused.append((upload.name or "", str(e.fields["image"] if e.fields and "image" in e.fields
                                                   else e.message)))
    too_many = _("Not uploaded: please choose at most %(count)d selfies at once.") % {"count": high}
    refused.extend((upload.name or "", too_many) for upload in files[high:])
    return render_page(request, status=400 if refused and not kept else 200, refused_files=refused,
                       kept_files=kept)


@require_POST
@signed_in_required
def start_likeness(request: UserRequest) -> HttpResponse:
    chosen = request.POST.getlist("photos")
    photo_ids = []
    for value in chosen:
        try:
            photo_ids.append(UUID(value))
        except ValueError:
            continue  # not an id at all, so not one of the person's photos
    try:
        do_start_likeness(request.user, photo_ids)
    except ActionError as e:
        return render_page(request, status=e.status, chosen=set(chosen), start_error=e.message)
    return redirect("likeness")


@require_POST
@signed_in_required
def delete_likeness(request: UserRequest, run_id: UUID) -> HttpResponse:
    do_delete_likeness(request.user, run_id)
    if request.POST.get("again") == "yes":
        messages.success(request, _("Choose your selfies again to train a new likeness model."))
    else:
        messages.success(request, _("Your likeness model was deleted."))
    return redirect("likeness")
