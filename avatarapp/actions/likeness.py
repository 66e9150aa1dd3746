"""Likeness models: a LoRA of one person's face, trained on their own selfies, used only by them.

Its own consent (versioned, recorded, withdrawable), separate from the photo consent: a model of
a face is a different use of it. The run is a TrainingRun of kind "likeness" owned by the user;
the worker trains it in chunks on the train queue like a style pack (worker/training/), then
stores the LoRA under the user's storage prefix, so erasing the account takes it with everything
else. The selfies stay ordinary photos (their retention applies); the face crops exist only in
the worker's memory and, as latents, in the run's folder, which goes when training ends.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.consent import has_likeness_consent, likeness_consent_version
from avatarapp.accounts.models import ConsentEvent, User
from avatarapp.actions.errors import ActionError, invalid_fields, not_found, queue_unavailable
from avatarapp.actions.photos import get_own_photo, require_consent
from avatarapp.jobs.models import Job
from avatarapp.lib.ratelimit import allow
from avatarapp.training.actions import send_chunk, training_family
from avatarapp.training.inputs import TrainingInputError
from avatarapp.training.models import CLASS_NOUN, CLASS_PROMPT, INSTANCE_PROMPT, INSTANCE_TOKEN, TrainingRun

log = logging.getLogger(__name__)

# Each family's training resolution when AVATAR_LIKENESS_RESOLUTION is 0 (its pictures' native size;
# the demo model is tiny and learns at 64).
FAMILY_RESOLUTION = {"demo": 64, "sd15": 512}
ACTIVE = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)
DAY = 24 * 3600


def do_give_likeness_consent(user: User, version: int) -> None:
    if version != likeness_consent_version():
        raise ActionError("consent_outdated", 400, _("Please read and accept the current consent text."),
                          fields={"version": _("This is not the current version.")})
    with transaction.atomic():
        user.likeness_consent_version = version
        user.likeness_consent_at = timezone.now()
        user.save(update_fields=["likeness_consent_version", "likeness_consent_at"])
        ConsentEvent.objects.create(user=user, kind=ConsentEvent.Kind.GRANTED, version=version,
                                    purpose=ConsentEvent.Purpose.LIKENESS, at=user.likeness_consent_at)


def do_withdraw_likeness_consent(user: User) -> None:
    """Withdrawn as easily as given, and the model goes with it: training stops, the LoRA is deleted."""
    with transaction.atomic():
        user.likeness_consent_version, user.likeness_consent_at = None, None
        user.save(update_fields=["likeness_consent_version", "likeness_consent_at"])
        ConsentEvent.objects.create(user=user, kind=ConsentEvent.Kind.WITHDRAWN,
                                    purpose=ConsentEvent.Purpose.LIKENESS)
    delete_likeness_runs(likeness_runs(user))


def require_likeness_consent(user: User) -> None:
    if not has_likeness_consent(user):
        raise ActionError("likeness_consent_required", 403,
                          _("Please read and accept the consent for a likeness model of your face first."))


def likeness_runs(user: User) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(kind=TrainingRun.Kind.LIKENESS, user=user)


def get_own_likeness(user: User, run_id: uuid.UUID | str) -> TrainingRun:
    run = likeness_runs(user).filter(id=run_id).first()
    if run is None:
        raise not_found(_("Likeness model not found."))
    return run


def ready_likeness(user: User, family: str) -> TrainingRun | None:
    """The user's trained likeness model for `family` models, if any (the newest)."""
    return likeness_runs(user).filter(status=TrainingRun.Status.SUCCEEDED, base_family=family).exclude(
        lora_key="").order_by("-finished_at").first()


def selfies_for_training(user: User, photo_ids: list[uuid.UUID]) -> list[str]:
    """The chosen photos, each the user's own, usable, and showing exactly one face; refused otherwise."""
    unique = list(dict.fromkeys(photo_ids))
    low, high = settings.AVATAR_LIKENESS_MIN_PHOTOS, settings.AVATAR_LIKENESS_MAX_PHOTOS
    if len(unique) < low:
        raise ActionError("too_few_photos", 400,
                          _("Please choose at least %(count)d selfies: the model learns your face from them.")
                          % {"count": low}, fields={"photos": _("Choose between %(low)d and %(high)d selfies.")
                                                    % {"low": low, "high": high}})
    if len(unique) > high:
        raise ActionError("too_many_photos", 400, _("Please choose at most %(count)d selfies.") % {"count": high},
                          fields={"photos": _("Choose between %(low)d and %(high)d selfies.")
                                  % {"low": low, "high": high}})
    photos = [get_own_photo(user, photo_id) for photo_id in unique]
    crowded = [photo for photo in photos if len(photo.face_boxes) != 1]
    if crowded:
        raise ActionError("not_one_face", 400,
                          _("%(count)d of these photos do not show exactly one face. A likeness model needs "
                            "selfies of you alone: please leave those out.") % {"count": len(crowded)},
                          fields={"photos": ", ".join(str(photo.id) for photo in crowded)})
    return [str(photo.id) for photo in photos]


def do_start_likeness(user: User, photo_ids: list[uuid.UUID]) -> TrainingRun:
    """Queue the training of the user's likeness model on their chosen selfies, or refuse, leaving nothing."""
    require_consent(user)
    require_likeness_consent(user)
    photos = selfies_for_training(user, photo_ids)
    try:
        family = training_family("")
    except TrainingInputError:
        log.warning("likeness training refused: no warm worker can train")
        raise ActionError("training_unavailable", 503,
                          _("Likeness models cannot be trained right now. Please try again later.")) from None
    resolution = settings.AVATAR_LIKENESS_RESOLUTION or FAMILY_RESOLUTION[family]
    with transaction.atomic():
        # Lock the user's row: two requests at once must not start two runs.
        User.objects.select_for_update().filter(pk=user.pk).first()
        runs = likeness_runs(user)
        if runs.filter(status__in=ACTIVE).exists():
            raise ActionError("likeness_in_progress", 409,
                              _("Your likeness model is already being trained. Please wait until it is ready."))
        if runs.filter(status=TrainingRun.Status.SUCCEEDED).exists():
            raise ActionError("likeness_exists", 409,
                              _("You already have a likeness model. Delete it first to train a new one."))
        if not allow("likeness", str(user.id), settings.AVATAR_LIKENESS_STARTS_PER_DAY, DAY):
            raise ActionError("rate_limited", 429, _("Too many requests. Please wait a little and try again."))
        run = TrainingRun.objects.create(
            kind=TrainingRun.Kind.LIKENESS, user=user, slug="likeness", name="", caption=INSTANCE_PROMPT,
            base_family=family, source="selfies", consent_version=user.likeness_consent_version,
            samples=[{"photo": photo, "caption": INSTANCE_PROMPT} for photo in photos],
            settings={"rank": settings.AVATAR_LIKENESS_RANK, "steps": settings.AVATAR_LIKENESS_STEPS,
                      "learning_rate": settings.AVATAR_LIKENESS_LEARNING_RATE, "resolution": resolution,
                      "seed": uuid.uuid4().int % 2**31, "batch_size": 1,
                      "prior_weight": settings.AVATAR_LIKENESS_PRIOR_WEIGHT,
                      "class_prompt": CLASS_PROMPT, "class_pictures": settings.AVATAR_LIKENESS_CLASS_PICTURES,
                      "instance_token": INSTANCE_TOKEN, "class_noun": CLASS_NOUN},
            chunk_steps=settings.AVATAR_LIKENESS_CHUNK_STEPS, total_steps=settings.AVATAR_LIKENESS_STEPS)
    try:
        send_chunk(run)
    except Exception:
        log.exception("could not queue likeness run %s", run.id)
        run.delete()
        raise queue_unavailable() from None
    return run


def do_delete_likeness(user: User, run_id: uuid.UUID | str) -> None:
    """Delete the model at once: its training stops, jobs waiting to use it are cancelled, its files go."""
    delete_likeness_runs(likeness_runs(user).filter(id=get_own_likeness(user, run_id).id))


def delete_likeness_runs(runs: QuerySet[TrainingRun]) -> None:
    """Rows first (a running chunk then finds its run gone and removes what it wrote), then files."""
    doomed = list(runs.values_list("id", "lora_key"))
    if not doomed:
        return
    ids = [run_id for run_id, _key in doomed]
    Job.objects.filter(likeness_id__in=ids, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.CANCELED, finished_at=timezone.now())
    TrainingRun.objects.filter(id__in=ids).delete()  # the post_delete signal removes each run's folder
    for _run_id, key in doomed:
        if key:
            default_storage.delete(key)


def likeness_for_job(user: User, family: str) -> TrainingRun:
    """The likeness model a new job of `family` uses, or a refusal saying why there is none."""
    require_likeness_consent(user)
    run = ready_likeness(user, family)
    if run is None:
        raise invalid_fields({"likeness": _("You have no likeness model for this style yet.")})
    return run
