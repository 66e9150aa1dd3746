"""Photos: upload (every check a selfie must pass) and delete."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.consent import has_consented
from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError, invalid_fields, not_found
from avatarapp.faces.detect import FaceBox, find_faces
from avatarapp.lib.ratelimit import allow
from avatarapp.lib.storage_keys import photo_key
from avatarapp.photos.models import Photo
from avatarapp.photos.normalize import NormalisedImage, UploadRejected, normalise_upload


def require_consent(user: User) -> None:
    if not has_consented(user):
        raise ActionError("consent_required", 403, _("Please read and accept the consent text before uploading."))


def get_own_photo(user: User | None, photo_id: uuid.UUID | str) -> Photo:
    """The user's photo while it is usable; anyone else's, or an expired one, is 'not found'."""
    photo = Photo.objects.filter(id=photo_id, user=user, expires_at__gt=timezone.now()).first()
    if photo is None:
        raise not_found(_("Photo not found."))
    return photo


def check_faces(image: NormalisedImage) -> list[FaceBox]:
    """The faces a portrait can be made from, largest first; refuse a photo with none."""
    assert image.pixels is not None
    faces = find_faces(image.pixels)
    if not faces:
        raise ActionError("no_face", 400, _("We could not find a face in this photo. Please use a clear photo of "
                                            "your face, looking at the camera, in good light."))
    if faces[0].side < settings.AVATAR_MIN_FACE_SIDE:
        raise ActionError("face_too_small", 400, _("Your face is too small in this photo to make a portrait from. "
                                                   "Please come closer, so your face fills more of the picture, "
                                                   "and try again."))
    return faces


def do_upload_photo(user: User, upload: UploadedFile | None) -> Photo:
    """Check, normalise and store a selfie; refuse with an ActionError, leaving nothing behind."""
    require_consent(user)
    if upload is None:
        raise invalid_fields({"image": _("Please choose a photo first.")})
    if upload.size is not None and upload.size > settings.AVATAR_MAX_UPLOAD_BYTES:
        raise ActionError("too_large", 413, _("The photo is too large. Please choose one under %(mb)d MB.")
                          % {"mb": settings.AVATAR_MAX_UPLOAD_BYTES // (1024 * 1024)})
    if not allow("upload", str(user.id), settings.AVATAR_RATE_UPLOADS_PER_HOUR):
        raise ActionError("rate_limited", 429, _("Too many uploads. Please wait a little and try again."))
    try:
        image = normalise_upload(upload.read())
    except UploadRejected as e:
        raise ActionError(e.code, e.status, e.message, reason=e.reason) from None
    faces = check_faces(image)
    photo_id = uuid.uuid4()
    stored_key = default_storage.save(photo_key(user.id, photo_id), ContentFile(image.data))
    try:
        with transaction.atomic():
            return Photo.objects.create(
                id=photo_id,
                user=user,
                storage_key=stored_key,
                width=image.width,
                height=image.height,
                content_type=image.content_type,
                faces=[face.to_json() for face in faces],
                expires_at=timezone.now() + timedelta(hours=settings.AVATAR_PHOTO_TTL_HOURS),
            )
    except Exception:
        default_storage.delete(stored_key)
        raise


def delete_photos(photos: QuerySet[Photo]) -> int:
    """Rows first, then their files: a file with no row is swept later, a row with no file is not."""
    keys = list(photos.values_list("storage_key", flat=True))
    photos.delete()
    for key in keys:
        default_storage.delete(key)
    return len(keys)


def do_delete_photo(user: User, photo_id: uuid.UUID | str) -> None:
    """The owner may delete their photo at any time, expired or not (it is theirs until it is gone)."""
    photos = Photo.objects.filter(id=photo_id, user=user)
    if not photos.exists():
        raise not_found(_("Photo not found."))
    delete_photos(photos)
