"""Frame a head-and-shoulders portrait around a face, at the output's aspect ratio.

Pure geometry, shared by the web process (the upload page shows the crop the worker
will use) and the worker (which cuts it). The face box is a tight detector box, brows
to chin; a portrait wants hair, neck and shoulders too, so the crop is several face
widths wide, with the face's centre in the upper part of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatarapp.faces.detect import Box, FaceBox

# The face box's width as a share of the crop's width: about a third leaves room for
# the hair and the shoulders on either side.
FACE_WIDTH_SHARE = 0.34
# Where the face's centre sits, from the top, as a share of the crop's height.
FACE_CENTRE_FROM_TOP = 0.42


@dataclass(frozen=True)
class Crop(Box):
    """A crop box in the photo's pixels (right and bottom exclusive)."""

    def contains(self, face: FaceBox) -> bool:
        return (self.left <= face.left and self.top <= face.top
                and self.right >= face.right and self.bottom >= face.bottom)


def centre_crop(image_width: int, image_height: int, aspect: float) -> Crop:
    """The largest crop of `aspect` (width / height) in the middle of the picture: what is used with no face."""
    width = min(image_width, image_height * aspect)
    height = width / aspect
    left = (image_width - width) / 2
    top = (image_height - height) / 2
    return Crop(round(left), round(top), round(left + width), round(top + height))


def portrait_crop(face: FaceBox, image_width: int, image_height: int, aspect: float = 1.0) -> Crop:
    """A crop of `aspect` (width / height) framing `face` head and shoulders, inside the picture.

    When the picture is too small for the whole framing, the crop shrinks (keeping its
    aspect) to the largest that fits, and slides to keep the face whole; only a face
    larger than the largest crop of that aspect can be cut, and then evenly.
    """
    width = face.width / FACE_WIDTH_SHARE
    height = width / aspect
    fit = min(1.0, image_width / width, image_height / height)
    width, height = width * fit, height * fit

    centre_x = (face.left + face.right) / 2
    centre_y = (face.top + face.bottom) / 2
    left = centre_x - width / 2
    top = centre_y - FACE_CENTRE_FROM_TOP * height
    # A crop cut short by the picture's size could start below the brows: keep the face whole first.
    if height >= face.height:
        top = min(top, face.top)
        top = max(top, face.bottom - height)
    left = min(max(left, 0.0), image_width - width)
    top = min(max(top, 0.0), image_height - height)
    crop = Crop(round(left), round(top), round(left + width), round(top + height))
    # Rounding must never step outside the picture.
    return Crop(max(0, crop.left), max(0, crop.top), min(image_width, crop.right), min(image_height, crop.bottom))


# Around the face box for the identity adapter's reference: IP-Adapter's face models were trained
# on face crops with the hair and chin in, a little wider than a detector's tight box.
FACE_MARGIN = 0.4


def face_crop(face: FaceBox, image_width: int, image_height: int) -> Crop:
    """A square around the face with FACE_MARGIN on each side, inside the picture."""
    side = min(max(face.width, face.height) * (1 + 2 * FACE_MARGIN), image_width, image_height)
    left = min(max((face.left + face.right - side) / 2, 0.0), image_width - side)
    top = min(max((face.top + face.bottom - side) / 2, 0.0), image_height - side)
    return Crop(round(left), round(top), round(left + side), round(top + side))
