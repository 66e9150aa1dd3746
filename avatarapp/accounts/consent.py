"""The consent text a user accepts before uploading a photo."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _

from avatarapp.accounts.models import User


def consent_text() -> str:
    # Says exactly what avatarapp/actions/retention.py and do_withdraw_consent do, with the
    # configured durations: change one, change the other (and AVATAR_CONSENT_VERSION).
    return _(
        "I am 18 or older. I will upload only photos of myself, or of people who agreed to it. "
        "Chhavi uses my photo only to make the pictures I ask for, on this service's own servers, and "
        "never shares it. My photo is deleted %(hours)d hours after I upload it (at the next clean-up, "
        "which runs every %(minutes)d minutes), or at once when I delete it or withdraw this consent; "
        "a photo that a picture is still being made from is kept until that picture is finished. "
        "Pictures made here are labelled as AI-generated and stay until I delete them or my account. "
        "A share link stops working when it expires or when I remove it. I can withdraw this consent, "
        "download my data and delete my account at any time on the “Your data” page."
    ) % {"hours": settings.AVATAR_PHOTO_TTL_HOURS, "minutes": max(1, round(settings.AVATAR_RETENTION_INTERVAL / 60))}


def consent_version() -> int:
    return settings.AVATAR_CONSENT_VERSION


def has_consented(user: User) -> bool:
    return user.consent_version is not None and user.consent_version >= consent_version()


def likeness_consent_text() -> str:
    # Says exactly what avatarapp/actions/likeness.py and worker/training/likeness.py do: change one,
    # change the other (and AVATAR_LIKENESS_CONSENT_VERSION).
    return _(
        "I agree that Chhavi trains a likeness model of my face from the selfies I choose, on this "
        "service's own servers. The model is mine: only my own pictures use it, and only when I ask. "
        "The selfies are kept no longer than any photo (%(hours)d hours); the face crops and "
        "training files are deleted as soon as training ends. I can delete the model at any time, "
        "and it is deleted when I withdraw this consent or delete my account. I will train a model "
        "only of my own face."
    ) % {"hours": settings.AVATAR_PHOTO_TTL_HOURS}


def likeness_consent_version() -> int:
    return settings.AVATAR_LIKENESS_CONSENT_VERSION


def has_likeness_consent(user: User) -> bool:
    return (user.likeness_consent_version is not None
            and user.likeness_consent_version >= likeness_consent_version())
