"""Turn uploaded bytes into a safe, upright, metadata-free image.

Checks go by content, never by file name or the client's content type. The
original bytes are never stored: the image is decoded, turned upright from its
EXIF orientation, flattened onto white if it has transparency, and re-encoded
as a fresh JPEG that carries no EXIF, GPS, XMP, IPTC or comments (an ICC colour
profile is kept so colours stay right).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import pillow_heif
from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

pillow_heif.register_heif_opener()

HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


class UploadRejected(Exception):
    """An upload we refuse, with the API error code, HTTP status and a localised message."""

    def __init__(self, code: str, status: int, message: str | Promise, reason: str = "") -> None:
        super().__init__(str(message))
        self.code = code
        self.status = status
        self.message = message
        self.reason = reason or code


@dataclass
class NormalisedImage:
    data: bytes
    width: int
    height: int
    content_type: str = "image/jpeg"
    pixels: Image.Image | None = None  # the upright RGB image that was encoded, for the face check


def sniff_format(head: bytes) -> str | None:
    """The image format named by the file's magic bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "HEIF"
    return None


def normalise_upload(data: bytes) -> NormalisedImage:
    # 1. Check size and kind before decoding anything.
    if len(data) > settings.AVATAR_MAX_UPLOAD_BYTES:
        raise UploadRejected("too_large", 413, _("The photo is too large. Please choose one under %(mb)d MB.")
                             % {"mb": settings.AVATAR_MAX_UPLOAD_BYTES // (1024 * 1024)})
    kind = sniff_format(data[:32])
    if kind is None:
        raise UploadRejected("unsupported_type", 415, _("Please upload a JPEG, PNG, WebP or HEIC photo."))

    # 2. Decode fully, refusing decompression bombs, truncated and mislabelled files.
    Image.MAX_IMAGE_PIXELS = settings.AVATAR_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=[kind])
            if image.width * image.height > settings.AVATAR_MAX_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRejected(
            "too_large", 413, _("The photo has too many pixels. Please choose a smaller one."),
        ) from None
    except Exception:  # noqa: BLE001 - Pillow's decoders raise many types (OSError, ValueError, SyntaxError, ...)
        raise UploadRejected(
            "invalid_image", 400, _("This file could not be read as a photo. It may be damaged."),
        ) from None

    # 3. Upright, then refuse photos too small to make a portrait from.
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        # A broken orientation tag is not worth refusing the photo for.
        logger.debug("Ignoring an unreadable EXIF orientation", exc_info=True)
    if min(image.size) < settings.AVATAR_MIN_SIDE:
        raise UploadRejected(
            "invalid_image", 400,
            _("This photo is too small to make a portrait from. Please use one at least %(px)d pixels on each side.")
            % {"px": settings.AVATAR_MIN_SIDE},
            reason="too_small",
        )

    # 4. Flatten transparency onto white and cap the stored size.
    icc_profile = image.info.get("icc_profile")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    elif image.mode != "RGB":
        image = image.convert("RGB")
    max_side = settings.AVATAR_STORED_MAX_SIDE
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)

    # 5. Re-encode from pixels only: no EXIF, XMP or comments survive.
    out = io.BytesIO()
    save_args: dict[str, Any] = {"format": "JPEG", "quality": 90, "optimize": True}
    if icc_profile:
        save_args["icc_profile"] = icc_profile
    image.save(out, **save_args)
    return NormalisedImage(out.getvalue(), image.width, image.height, pixels=image)
