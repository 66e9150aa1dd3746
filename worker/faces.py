"""Face analysis in the worker: who a picture shows (likeness) and how light its skin is drawn.

Both readings start from the same two dlib models in `face_recognition_models` (CC0): the
5-point shape predictor (the outer and inner corner of each eye and the base of the nose) and
the ResNet face embedder. The package also holds a 68-point predictor, which is not licensed for
commercial use: it is never loaded. Faces are found with the upload's detector
(avatarapp/faces/detect.py), so the worker and the web side agree on what a face is.

Likeness
    dlib's 128-d embedding of the face, aligned on the 5 landmarks. Two pictures of one person
    lie less than 0.6 apart (dlib's threshold, 99.38 % on LFW); `likeness` is 1 − distance,
    so ≥ SAME_PERSON (0.4) reads "the same person". On the test pictures other photos of the
    same person score 0.93-0.94 (0.76 for a 53-pixel face saved at JPEG quality 60), other
    people 0.31-0.32.

Skin tone
    The Individual Typology Angle, ITA = atan2(L* − 50, b*) in degrees, from CIELAB (D65) of
    skin sampled on both cheeks: a patch below each eye and above the nose-base line, its side
    a quarter of the distance between the eyes, so it scales with the face and turns with it.
    Pixels too dark or too bright to be lit skin (shadow, specular highlight, a strand of hair)
    are dropped, and the median L* and b* of the rest give the angle. Bands (Chardon et al.):
    > 55 very light, 41-55 light, 28-41 intermediate, 10-28 tan, −30-10 brown, < −30 dark.

    What it is for: comparing a generated portrait with the selfie it was made from, to catch a
    model that lightens skin (a known bias of image models trained mostly on lighter faces).
    Its limits: it measures the picture, not the person. The light (warm indoor bulbs, shade,
    flash), make-up and a colour cast over the whole picture (a white balance, a warm or cool
    grade) all move it, and by a lot: on the test portrait a mild cool grade (red ×0.85, green
    ×0.95) reads +10 degrees, as lightening would, and a warm one −27. So the absolute value is a
    rough band, not a measurement of someone's skin, and a pack whose look is a cool grade will
    read as lightened. Because only the cheeks are sampled, a grade of the background alone does
    not move it (0.0 on the test portrait). The angle also flattens towards 90 degrees: one step
    of L* moves a very light tone's angle less than half as far as a brown one's.
    Beards on the cheeks, glasses resting low and a face turned far to the side make the
    patches miss skin; when too few usable pixels remain the reading is None, not a guess.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from PIL import Image

from avatarapp.faces.detect import FaceBox, find_faces

MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"

# likeness ≥ SAME_PERSON ⇔ embedding distance ≤ 0.6, dlib's same-person threshold.
SAME_PERSON = 0.4

# The embedder's own defaults, on purpose. Padding 0.25 is the margin around the aligned face
# the model was trained with; another margin lowers its accuracy. No jitter (one pass): dlib's
# jitter averages randomly shifted copies, which buys ~0.5 % on LFW for N times the time (100 for
# the quoted figure) and makes the same picture read differently twice. Ranking a handful of
# portraits that are either clearly the person (distance < 0.1 here) or clearly not needs neither.
NUM_JITTERS = 0
PADDING = 0.25

# Cheek patches, in units of the distance between the eye centres (d) and of the drop from the
# eye line to the base of the nose (h): centred below each eye, pushed a little outward onto the
# cheekbone and 0.6 h down, which keeps them under the lower eyelid and clear of the nostrils.
CHEEK_DOWN = 0.6
CHEEK_OUT = 0.05
CHEEK_SIDE = 0.25
# Which pixels count as lit skin: L* within these bounds (black shadow and blown-out white are no
# skin at any tone), and within MAX_FROM_MEDIAN of the patches' median L* (a shadow or a specular
# highlight is far darker or brighter than the skin around it; skin itself varies by less).
MIN_L, MAX_L = 5.0, 97.0
MAX_FROM_MEDIAN = 15.0
# Fewer usable pixels than this (a face ~40 px wide, or cheeks hidden): no reading.
MIN_SKIN_PIXELS = 30


@dataclass
class FaceReading:
    """One face in one picture: its box, its 128-d embedding and its skin tone (ITA, degrees)."""

    box: FaceBox
    embedding: np.ndarray
    skin_ita: float | None


def models_folder() -> Path:
    """face_recognition_models' folder of .dat files, found without importing the package.

    Its __init__ imports pkg_resources, which recent setuptools no longer ships, so importing it
    fails although the files are there.
    """
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"The Python package {MODELS_PACKAGE!r} (dlib's face models) is not installed: "
                           f"install the worker extras (pip install -e '.[worker]').")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (SHAPE_PREDICTOR, EMBEDDER):
        if not (folder / name).is_file():
            raise RuntimeError(f"{folder / name} is missing: reinstall the package {MODELS_PACKAGE!r}.")
    return folder


class FaceAnalyser:
    """dlib's landmark and embedding models, loaded once and used under one lock.

    dlib's models keep scratch buffers while they run and are not safe to call from two threads
    at once; a worker reads a few faces per job, so one lock costs nothing worth measuring.
    """

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or models_folder()
        self._lock = threading.Lock()
        self._landmarks: Any = dlib.shape_predictor(str(folder / SHAPE_PREDICTOR))
        self._embedder: Any = dlib.face_recognition_model_v1(str(folder / EMBEDDER))

    def read(self, image: Image.Image, box: FaceBox | None = None) -> FaceReading | None:
        """The face in `box`, or the largest face in `image` (upright); None when there is none."""
        pixels = np.asarray(image.convert("RGB"))
        if box is None:
            faces = find_faces(image)
            if not faces:
                return None
            box = faces[0]
        rectangle = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        with self._lock:
            shape = self._landmarks(pixels, rectangle)
            embedding = np.array(self._embedder.compute_face_descriptor(pixels, shape, NUM_JITTERS, PADDING))
        landmarks = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=float)
        return FaceReading(box=box, embedding=embedding, skin_ita=skin_tone(pixels, landmarks))


def likeness(a: FaceReading, b: FaceReading) -> float:
    """1 − the distance between the two embeddings, floored at 0, to 3 decimals.

    ≥ SAME_PERSON (0.4) means the same person by dlib's threshold (distance ≤ 0.6).
    """
    distance = float(np.linalg.norm(a.embedding - b.embedding))
    return round(max(0.0, 1.0 - distance), 3)


# sRGB (D65) linear RGB → XYZ, and the D65 white point: IEC 61966-2-1.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB pixels (uint8, any shape ending in 3): an array of L*, a*, b*."""
    c = np.asarray(rgb, dtype=float) / 255.0
    # Undo the sRGB transfer curve first: the XYZ matrix applies to linear light.
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def cheek_points(landmarks: np.ndarray) -> np.ndarray:
    """Pixel positions (x, y) of the two cheek patches, from dlib's 5 landmarks.

    The five points are two corners of each eye (0-1 and 2-3) and the base of the nose (4). The
    patches are laid out in the face's own frame (across: eye to eye; down: towards the nose), so
    a tilted head gets tilted patches.
    """
    eyes = np.array([landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)])
    nose = landmarks[4]
    middle = eyes.mean(axis=0)
    across = eyes[1] - eyes[0]
    d = float(np.linalg.norm(across))
    across /= d
    down = np.array([-across[1], across[0]])
    if np.dot(nose - middle, down) < 0:
        down = -down
    h = float(np.dot(nose - middle, down))
    # A sample per pixel of the patch's side (at least 2), in [-0.5, 0.5] of the side.
    steps = max(2, round(CHEEK_SIDE * d))
    grid = (np.arange(steps) + 0.5) / steps - 0.5
    offsets = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2) * CHEEK_SIDE * d
    patches = []
    for eye in eyes:
        outward = 1.0 if np.dot(eye - middle, across) > 0 else -1.0
        centre = eye + across * outward * CHEEK_OUT * d + down * CHEEK_DOWN * h
        patches.append(centre + offsets[:, :1] * across + offsets[:, 1:] * down)
    return np.concatenate(patches)


def skin_tone(pixels: np.ndarray, landmarks: np.ndarray) -> float | None:
    """ITA in degrees of the cheeks of the face with these 5 landmarks, or None with too few skin pixels.

    `pixels` is the picture as an RGB uint8 array (height, width, 3).
    """
    points = np.rint(cheek_points(landmarks)).astype(int)
    height, width = pixels.shape[:2]
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    points = points[inside]
    if len(points) < MIN_SKIN_PIXELS:
        return None
    lab = srgb_to_lab(pixels[points[:, 1], points[:, 0]])
    lightness = lab[:, 0]
    lab = lab[(lightness >= MIN_L) & (lightness <= MAX_L)]
    if len(lab) < MIN_SKIN_PIXELS:
        return None
    lab = lab[np.abs(lab[:, 0] - np.median(lab[:, 0])) <= MAX_FROM_MEDIAN]
    if len(lab) < MIN_SKIN_PIXELS:
        return None
    l_star, b_star = float(np.median(lab[:, 0])), float(np.median(lab[:, 2]))
    return round(math.degrees(math.atan2(l_star - 50.0, b_star)), 2)


_analyser: FaceAnalyser | None = None
_analyser_lock = threading.Lock()


def get_analyser() -> FaceAnalyser:
    """The process's one FaceAnalyser, loaded on first use (the worker's warm-up calls this)."""
    global _analyser
    with _analyser_lock:
        if _analyser is None:
            _analyser = FaceAnalyser()
        return _analyser
