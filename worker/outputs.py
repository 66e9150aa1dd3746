"""Write a generated image and its thumbnail to storage under the owner's prefix."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from avatarapp.jobs.models import Job, Output

THUMBNAIL_SIZE = 256


def output_keys(job: Job, index: int) -> tuple[str, str]:
    # Deterministic keys: a repeated task overwrites its own files instead of adding more.
    prefix = f"users/{job.user_id}/jobs/{job.id}"
    return f"{prefix}/{index}.webp", f"{prefix}/{index}_thumb.webp"


def encode_webp(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", quality=quality, method=4)
    return out.getvalue()


def store_output(job: Job, index: int, image: Image.Image) -> Output:
    key, thumb_key = output_keys(job, index)
    data = encode_webp(image, quality=90)
    thumbnail = image.copy()
    thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    default_storage.save(key, ContentFile(data))
    default_storage.save(thumb_key, ContentFile(encode_webp(thumbnail, quality=80)))
    output, _ = Output.objects.update_or_create(
        job=job,
        index=index,
        defaults={
            "user_id": job.user_id,
            "storage_key": key,
            "thumbnail_key": thumb_key,
            "width": image.width,
            "height": image.height,
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
