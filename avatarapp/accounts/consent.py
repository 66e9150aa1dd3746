"""The consent text a user accepts before uploading a photo."""

from django.conf import settings
from django.utils.translation import gettext as _


def consent_text() -> str:
    return _(
        "I am 18 or older. I will upload only photos of myself, or of people who agreed to it. "
        "Chhavi keeps my photo for at most %(hours)d hours to make my pictures, on this service's own "
        "servers, and never shares it. Pictures made here are labelled as AI-generated. I can delete "
        "my photos, my pictures and my account at any time."
    ) % {"hours": settings.AVATAR_PHOTO_TTL_HOURS}


def consent_version() -> int:
    return settings.AVATAR_CONSENT_VERSION


def has_consented(user) -> bool:
    return user.consent_version is not None and user.consent_version >= consent_version()
