"""Accounts: guests, consent, erasure and export."""

from __future__ import annotations

import json
import tempfile
import zipfile
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.core.files.storage import default_storage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from avatarapp.accounts.consent import consent_version
from avatarapp.accounts.models import ConsentEvent, User
from avatarapp.actions.errors import ActionError
from avatarapp.actions.photos import delete_photos
from avatarapp.jobs.models import Job
from avatarapp.lib.ratelimit import allow
from avatarapp.lib.storage import delete_prefix
from avatarapp.lib.storage_keys import user_prefix
from avatarapp.photos.models import Photo
from avatarapp.sharing.models import Report


def do_create_guest(client_ip: str, language: str) -> User:
    """A guest account, limited per client address so nobody can mint them in bulk."""
    if not allow("guest", client_ip, settings.AVATAR_RATE_GUESTS_PER_HOUR):
        raise ActionError("rate_limited", 429, _("Too many requests. Please wait a little and try again."))
    return User.objects.create_guest(language=language)


def do_give_consent(user: User, version: int, adult: bool) -> None:
    """Record consent to the current text, from someone who confirmed they are an adult."""
    if version != consent_version():
        raise ActionError("consent_outdated", 400, _("Please read and accept the current consent text."),
                          fields={"version": _("This is not the current version.")})
    if adult is not True:
        raise ActionError("adult_required", 400, _("You must be 18 or older to use Chhavi."),
                          fields={"adult": _("Please confirm that you are 18 or older.")})
    with transaction.atomic():
        user.consent_version = version
        user.consent_at = timezone.now()
        user.save(update_fields=["consent_version", "consent_at"])
        ConsentEvent.objects.create(user=user, kind=ConsentEvent.Kind.GRANTED, version=version, at=user.consent_at)


def do_withdraw_consent(user: User) -> None:
    """Withdraw consent: as easy as giving it, and the purpose goes with it (DPDP s. 6(4)).

    Queued and running jobs are cancelled (a running one stops at its next step) and every
    photo is deleted, row and file. Pictures already made stay until the person deletes
    them or the account. Uploads and new jobs answer 403 consent_required until consent
    is given again.
    """
    with transaction.atomic():
        user.consent_version, user.consent_at = None, None
        user.save(update_fields=["consent_version", "consent_at"])  # (its signal clears the token cache)
        ConsentEvent.objects.create(user=user, kind=ConsentEvent.Kind.WITHDRAWN)
        Job.objects.filter(user=user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
            status=Job.Status.CANCELED, finished_at=timezone.now())
    delete_photos(Photo.objects.filter(user=user))

def do_erase_user(user: User) -> None:
    """Delete the account and everything it owns: rows first, then every file under its prefix.

    Reports about its pictures stay for moderation (reason, details, when, resolved) but lose
    the share token and the picture that tied them to this person; its sessions go too.
    """
    prefix = user_prefix(user.pk)  # before delete(), which clears the pk
    with transaction.atomic():
        Report.objects.filter(output__user=user).update(output=None, share_token="")
        delete_sessions_of(user)
        user.delete()
    delete_prefix(prefix)


def delete_sessions_of(user: User) -> None:
    """Django's sessions are not indexed by user, so the live ones are read (a scan, once per erasure)."""
    doomed = [s.session_key for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
              if s.get_decoded().get(SESSION_KEY) == str(user.pk)]
    Session.objects.filter(session_key__in=doomed).delete()


EXPORT_NAME = "chhavi-export.zip"


def build_export(user: User) -> IO[bytes]:
    """A zip of what we hold about the user: a JSON summary plus every image, as a temporary file.

    Written to disk, not memory, so an account with many pictures cannot swell the web
    process; the caller streams it out (FileResponse) and closing it deletes it.
    """
    buffer = tempfile.TemporaryFile()
    summary: dict[str, Any] = {
        "id": str(user.id),
        "email": user.email,
        "phone": user.phone,
        "is_guest": user.is_guest,
        "language": user.language,
        "consent_version": user.consent_version,
        "consent_at": user.consent_at.isoformat() if user.consent_at else None,
        "consent_history": [{"purpose": e.purpose, "kind": e.kind, "version": e.version, "at": e.at.isoformat()}
                            for e in user.consent_events.all()],
        "likeness_consent_version": user.likeness_consent_version,
        # The models themselves are weights, not the person's data as they gave it: listed, not exported.
        "likeness_models": [{"id": str(run.id), "status": run.status, "created_at": run.created_at.isoformat(),
                             "consent_version": run.consent_version, "report": run.report}
                            for run in user.likeness_runs.all()],
        "date_joined": user.date_joined.isoformat(),
        "photos": [],
        "jobs": [],
    }
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for photo in user.photos.all():
            name = f"photos/{photo.id}.jpg"
            summary["photos"].append({"id": str(photo.id), "file": name, "created_at": photo.created_at.isoformat()})
            _add_file(archive, photo.storage_key, name)
        for job in user.jobs.select_related("pack").prefetch_related("outputs__shares"):
            entry: dict[str, Any] = {
                "id": str(job.id),
                "pack": job.pack.slug,
                "status": job.status,
                "seed": job.seed,
                "created_at": job.created_at.isoformat(),
                "outputs": [],
            }
            for output in job.outputs.all():
                name = f"outputs/{output.id}.webp"
                shares = [{"url": settings.SITE_URL + reverse("share_page", kwargs={"token": share.token}),
                           "created_at": share.created_at.isoformat(), "views": share.views,
                           "expires_at": share.expires_at.isoformat() if share.expires_at else None}
                          for share in output.shares.all()]
                entry["outputs"].append({"id": str(output.id), "file": name, "shares": shares})
                _add_file(archive, output.storage_key, name)
            summary["jobs"].append(entry)
        archive.writestr("chhavi.json", json.dumps(summary, indent=2, ensure_ascii=False))
    buffer.seek(0)
    return buffer


def _add_file(archive: zipfile.ZipFile, key: str, name: str) -> None:
    try:
        with default_storage.open(key, "rb") as f:
            archive.writestr(name, f.read())
    except (FileNotFoundError, OSError):
        pass  # A file already gone (expired photo) is simply not in the export.

