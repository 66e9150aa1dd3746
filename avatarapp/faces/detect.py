"""Find the faces in an upright photo with dlib's frontal-face HOG detector.

Why this detector: its model is compiled into dlib (Boost licence), so nothing is
downloaded or loaded from disk, and on a copy of the photo 960 pixels on its long side it
answers in 50-70 ms on one core, keeping the web process free of torch and small. It
finds frontal and near-frontal faces, which is what a selfie for a portrait is; a
profile is "no face", and the message says to look at the camera.

Detection runs on downscaled copies (PASSES): first 960 pixels on the long side, which
finds faces from about a twelfth of the long side up (every selfie, most group photos);
only when that finds nothing, a second look at 640 pixels upsampled once (so 1280), which
finds faces down to about a sixteenth of it. Boxes come back in the photo's own pixels,
largest first: the largest face is the one a portrait is made of.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import dlib
import numpy as np
from PIL import Image

# (long side of the copy, times the detector upsamples it): the second pass only when the first finds nothing.
PASSES = ((960, 0), (640, 1))
# dlib's detection score: real faces in the test pictures score 1.1-1.4, a badge or a
# pattern that looks a little like a face 0.05-0.15. Below this, it is not a face.
MIN_SCORE = 0.5

# One detector per process, used under a lock: dlib's object detectors keep scratch state
# and are not safe to share between threads, and building one takes most of a second.
_detector: Any = None
_lock = threading.Lock()


def run_detector(pixels: np.ndarray, upsample: int) -> tuple[Any, Any]:
    """dlib's rectangles and scores for an RGB array."""
    global _detector
    with _lock:
        if _detector is None:
            _detector = dlib.get_frontal_face_detector()
        rectangles, scores, _ = _detector.run(pixels, upsample, 0.0)
    return rectangles, scores


def warm_up() -> None:
    """Build the detector now (the web server calls this as it starts), not in the first upload."""
    run_detector(np.zeros((8, 8, 3), dtype=np.uint8), 0)


@dataclass(frozen=True)
class Box:
    """A box in a picture's pixels (right and bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class FaceBox(Box):
    """A face's box in the photo's pixels and the detector's score."""

    score: float = 0.0

    @property
    def side(self) -> int:
        return min(self.width, self.height)

    @property
    def area(self) -> int:
        return self.width * self.height

    def to_json(self) -> dict[str, Any]:
        return {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom,
                "score": round(self.score, 3)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceBox:
        return cls(int(data["left"]), int(data["top"]), int(data["right"]), int(data["bottom"]),
                   float(data.get("score", 0.0)))


def find_faces(image: Image.Image) -> list[FaceBox]:
    """The faces in `image` (upright), largest first, in its own pixel coordinates."""
    image = image.convert("RGB")
    for side, upsample in PASSES:
        faces = detect_at(image, side, upsample)
        if faces:
            return sorted(faces, key=lambda face: (-face.area, face.left, face.top))
    return []


def downscaled(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    if scale >= 1.0:
        return image
    # reduce() first: averaging whole pixel blocks is fast and alias-free for large steps.
    factor = int(1 / scale)
    small = image.reduce(factor) if factor >= 2 else image
    return small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BILINEAR)


def detect_at(image: Image.Image, side: int, upsample: int) -> list[FaceBox]:
    """The faces the detector finds on a copy `side` pixels on its long side, in `image`'s pixels."""
    small = downscaled(image, side)
    sx, sy = image.width / small.width, image.height / small.height
    rectangles, scores = run_detector(np.asarray(small), upsample)
    faces = [
        FaceBox(
            left=max(0, round(r.left() * sx)),
            top=max(0, round(r.top() * sy)),
            right=min(image.width, round((r.right() + 1) * sx)),
            bottom=min(image.height, round((r.bottom() + 1) * sy)),
            score=float(score),
        )
        for r, score in zip(rectangles, scores, strict=True)
        if score >= MIN_SCORE
    ]
    return [face for face in faces if face.width > 0 and face.height > 0]
