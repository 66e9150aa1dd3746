"""Write a generated image and its thumbnail to storage under the owner's prefix.

Every picture leaves here labelled as AI-made three ways: a visible label in
the owner's language beside English, XMP/EXIF metadata, and an invisible
watermark carrying the output's short id (see avatarapp/provenance/).
"""

from __future__ import annotations

import io
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import translation
from PIL import Image

from avatarapp.jobs.models import Job, Output
from avatarapp.provenance import c2pa_manifest, metadata, watermark
from avatarapp.provenance.label import draw_label, label_spec

THUMBNAIL_SIZE = 256


def output_id_for(job: Job, index: int) -> uuid.UUID:
    # Derived from the job, so a repeated task reuses the same row, keys and watermark.
    return uuid.uuid5(job.id, str(index))


def output_keys(job: Job, index: int) -> tuple[str, str]:
    prefix = f"users/{job.user_id}/jobs/{job.id}"
    return f"{prefix}/{index}.webp", f"{prefix}/{index}_thumb.webp"


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


def store_output(job: Job, index: int, image: Image.Image) -> Output:
    output_id = output_id_for(job, index)
    key, thumb_key = output_keys(job, index)
    provenance = metadata.provenance_for(output_id, job.pack.slug)
    marked = watermark.embed(label_for(image, job.user.language), watermark.short_id_of(output_id))
    data = encode_webp(marked, 90, provenance)
    if settings.AVATAR_C2PA and c2pa_manifest.available():
        data = c2pa_manifest.sign(data, "image/webp", provenance)
    thumbnail = marked.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    default_storage.save(key, ContentFile(data))
    default_storage.save(thumb_key, ContentFile(encode_webp(thumbnail, 80, provenance)))
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
        },
    )
    return output


def remove_outputs(job: Job) -> None:
    for output in job.outputs.all():
        default_storage.delete(output.storage_key)
        default_storage.delete(output.thumbnail_key)
    job.outputs.all().delete()
