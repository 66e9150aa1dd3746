"""Actions that change photos: upload and delete."""

from __future__ import annotations

from datetime import timedelta
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from avatarapp.accounts.models import User
from avatarapp.photos.models import Photo
from avatarapp.photos.normalize import normalise_upload


def photo_key(user: User, photo_id: uuid.UUID) -> str:
    return f"users/{user.id}/photos/{photo_id}.jpg"


def do_upload_photo(user: User, data: bytes) -> Photo:
    """Normalise and store a photo; raise UploadRejected (leaving nothing) if it is refused."""
    image = normalise_upload(data)
    photo_id = uuid.uuid4()
    key = photo_key(user, photo_id)
    stored_key = default_storage.save(key, ContentFile(image.data))
    try:
        with transaction.atomic():
            return Photo.objects.create(
                id=photo_id,
                user=user,
                storage_key=stored_key,
                width=image.width,
                height=image.height,
                content_type=image.content_type,
                expires_at=timezone.now() + timedelta(hours=settings.AVATAR_PHOTO_TTL_HOURS),
            )
    except Exception:
        default_storage.delete(stored_key)
        raise


def do_delete_photo(photo: Photo) -> None:
    key = photo.storage_key
    photo.delete()
    default_storage.delete(key)
