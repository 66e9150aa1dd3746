"""Actions on accounts: guests, registration, consent, erasure and export."""

from __future__ import annotations

import io
import json
import zipfile

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from avatarapp.accounts.models import User
from avatarapp.sharing.cards import card_keys_for_user


def do_record_consent(user: User, version: int) -> None:
    user.consent_version = version
    user.consent_at = timezone.now()
    user.save(update_fields=["consent_version", "consent_at"])


def user_file_keys(user: User) -> list[str]:
    keys = list(user.photos.values_list("storage_key", flat=True))
    for key, thumb in user.outputs.values_list("storage_key", "thumbnail_key"):
        keys += [key, thumb]
    keys += card_keys_for_user(user)
    return keys


def do_erase_user(user: User) -> None:
    """Delete the account and everything it owns: rows first, then the files."""
    keys = user_file_keys(user)
    with transaction.atomic():
        user.delete()
    for key in keys:
        default_storage.delete(key)


def build_export(user: User) -> bytes:
    """A zip of what we hold about the user: a JSON summary plus every image."""
    buffer = io.BytesIO()
    summary = {
        "id": str(user.id),
        "email": user.email,
        "phone": user.phone,
        "is_guest": user.is_guest,
        "language": user.language,
        "consent_version": user.consent_version,
        "consent_at": user.consent_at.isoformat() if user.consent_at else None,
        "date_joined": user.date_joined.isoformat(),
        "photos": [],
        "jobs": [],
    }
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for photo in user.photos.all():
            name = f"photos/{photo.id}.jpg"
            summary["photos"].append({"id": str(photo.id), "file": name, "created_at": photo.created_at.isoformat()})
            _add_file(archive, photo.storage_key, name)
        for job in user.jobs.select_related("pack").prefetch_related("outputs"):
            entry = {
                "id": str(job.id),
                "pack": job.pack.slug,
                "status": job.status,
                "seed": job.seed,
                "created_at": job.created_at.isoformat(),
                "outputs": [],
            }
            for output in job.outputs.all():
                name = f"outputs/{output.id}.webp"
                entry["outputs"].append({"id": str(output.id), "file": name})
                _add_file(archive, output.storage_key, name)
            summary["jobs"].append(entry)
        archive.writestr("chhavi.json", json.dumps(summary, indent=2, ensure_ascii=False))
    return buffer.getvalue()


def _add_file(archive: zipfile.ZipFile, key: str, name: str) -> None:
    try:
        with default_storage.open(key, "rb") as f:
            archive.writestr(name, f.read())
    except (FileNotFoundError, OSError):
        pass  # A file already gone (expired photo) is simply not in the export.
