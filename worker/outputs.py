"""Write a generated image and its thumbnail to storage under the owner's prefix.

Every picture leaves here labelled as AI-made three ways: a visible label in
the owner's language beside English, XMP/EXIF metadata and a C2PA manifest, and
an invisible two-layer watermark carrying the output's short id (see
worker/provenance/). Its thumbnail and its share card, made here too from the marked
picture, get the cheap DCT layer written again at their own size (the card's is the one
that reads on it: worker/provenance/card.py), so an output costs one RivaGAN encoder run.

Before that, the content safety check (worker/safety.py) looks at it: an unsafe
picture is stored blurred, and its row flagged so it can never be shared.
"""

from __future__ import annotations

import io
import logging
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import translation
from PIL import Image

from avatarapp.accounts.models import User
from avatarapp.jobs.models import Job, Output
from avatarapp.lib import storage_keys
from avatarapp.lib.storage import delete_prefix
from avatarapp.provenance import metadata
from avatarapp.provenance.watermark import short_id_of
from worker.provenance import c2pa_sign
from worker.provenance.card import card_bytes, save_card
from worker.provenance.label import draw_label, label_spec
from worker.provenance.watermark_embed import embed as embed_watermark
from worker.provenance.watermark_embed import embed_dct
from worker.safety import blur, get_safety_check

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256


def output_id_for(job: Job, index: int) -> uuid.UUID:
    # Derived from the job, so a repeated task reuses the same row, keys and watermark.
    return uuid.uuid5(job.id, str(index))


def output_keys(job: Job, index: int) -> tuple[str, str]:
    return (storage_keys.output_key(job.user_id, job.id, index),
            storage_keys.thumbnail_key(job.user_id, job.id, index))


def encode_webp(image: Image.Image, quality: int, provenance: metadata.Provenance) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", quality=quality, method=4, **metadata.save_args(provenance))
    return out.getvalue()


def label_for(image: Image.Image, language: str) -> Image.Image:
    if not settings.AVATAR_LABEL:
        return image
    with translation.override(language):
        translated = translation.gettext("AI-generated")
    spec = label_spec(language, translated, settings.AVATAR_LABEL_FONT_DIRS)
    return draw_label(image, spec, settings.AVATAR_LABEL_POSITION, settings.AVATAR_LABEL_SCALE)


def safety_flag(image: Image.Image) -> str:
    """Why the content safety check holds the picture back ("" if it passes)."""
    check = get_safety_check()
    return check.reason if check.check([image])[0] else ""


def store_output(job: Job, index: int, image: Image.Image, *, likeness: float | None = None,
                 face_found: bool | None = None, skin_tone_shift: float | None = None) -> Output:
    """Label, mark and store picture `index` of the job (its rank: 0 is the best), with its measures."""
    output_id = output_id_for(job, index)
    key, thumb_key = output_keys(job, index)
    provenance = metadata.provenance_for(output_id, job.pack.slug)
    flag_reason = safety_flag(image)
    if flag_reason:
        # Only the blurred picture is kept: its owner sees that something happened, nobody sees more.
        log.warning("output %s of job %s held back by the content safety check (%s): stored blurred",
                    output_id, job.id, flag_reason)
        image = blur(image)
    marked = embed_watermark(label_for(image, job.user.language), short_id_of(output_id))
    data = encode_webp(marked, 90, provenance)
    if settings.AVATAR_C2PA:
        data = c2pa_sign.sign(data, "image/webp", provenance)
    thumbnail = marked.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    # Shrinking and WebP at quality 80 leave the DCT layer near its reading threshold for some ids:
    # written again at the thumbnail's own size, it reads as surely as the output's.
    thumbnail = embed_dct(thumbnail, short_id_of(output_id))
    default_storage.save(key, ContentFile(data))
    default_storage.save(thumb_key, ContentFile(encode_webp(thumbnail, 80, provenance)))
    if not flag_reason:
        # The share card is a picture that travels too: made now, marked and signed like the output.
        save_card(job.user_id, output_id, card_bytes(marked, output_id, provenance))
    output, _ = Output.objects.update_or_create(
        id=output_id,
        defaults={
            "job": job,
            "index": index,
            "user_id": job.user_id,
            "storage_key": key,
            "thumbnail_key": thumb_key,
            "width": marked.width,
            "height": marked.height,
            "content_type": "image/webp",
            "size_bytes": len(data),
            "flagged": bool(flag_reason),
            "flag_reason": flag_reason,
            "likeness": likeness,
            "face_found": face_found,
            "skin_tone_shift": skin_tone_shift,
        },
    )
    return output


def remove_outputs(job: Job) -> None:
    """A job's pictures, rows and files; by their deterministic keys, so files whose row was
    never written (or went with an erased account) go too."""
    Output.objects.filter(job_id=job.id).delete()
    for index in range(job.count):
        for key in output_keys(job, index):
            default_storage.delete(key)
    clear_prefix_if_erased(job.user_id)


def clear_prefix_if_erased(user_id: uuid.UUID) -> None:
    """After removing files a worker wrote for someone: if they erased their account meanwhile, nothing
    of theirs may stay, empty folders included (the erasure deleted the prefix before these were written)."""
    if not User.objects.filter(id=user_id).exists():
        delete_prefix(storage_keys.user_prefix(user_id))
