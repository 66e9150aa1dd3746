"""Faces: detection time at upload on a 12 MP phone photo, and the worker's reading of each output.

    python -m bench --only faces

Detection is timed as the upload runs it: on the normalised photo (upright, at most
AVATAR_STORED_MAX_SIDE), after the 12 MP JPEG was decoded; the decode and re-encode the
upload did anyway are shown beside it for scale. The web process's memory with the
detector loaded is the service suite's figure (its probe uploads a photo).
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path

from PIL import Image, ImageOps
from rich.progress import track

from avatarapp.faces.detect import find_faces, warm_up
from avatarapp.photos.normalize import normalise_upload
from bench.figures import Figure

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
DETECT_BUDGET_MS = 150.0
PHONE_SIZE = (4032, 3024)  # a 12 MP phone camera


def phone_photo(name: str) -> bytes:
    """A fixture blown up to 12 MP and saved as a phone would (JPEG, quality 92)."""
    base = ImageOps.exif_transpose(Image.open(FIXTURES / name)).convert("RGB")  # upright, as a camera app shows it
    scale = max(PHONE_SIZE[0] / base.width, PHONE_SIZE[1] / base.height)
    big = base.resize((round(base.width * scale), round(base.height * scale)), Image.Resampling.BICUBIC)
    left, top = (big.width - PHONE_SIZE[0]) // 2, (big.height - PHONE_SIZE[1]) // 2
    out = io.BytesIO()
    big.crop((left, top, left + PHONE_SIZE[0], top + PHONE_SIZE[1])).save(out, "JPEG", quality=92)
    return out.getvalue()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def time_detection(data: bytes, repeats: int, what: str) -> tuple[list[float], list[float], int]:
    """Milliseconds per detection and per normalisation of `data`, and the faces found."""
    detect_ms, normalise_ms, found = [], [], 0
    for _ in track(range(repeats), description=what, transient=True):
        started = time.perf_counter()
        normalised = normalise_upload(data)
        normalise_ms.append((time.perf_counter() - started) * 1000)
        assert normalised.pixels is not None
        started = time.perf_counter()
        found = len(find_faces(normalised.pixels))
        detect_ms.append((time.perf_counter() - started) * 1000)
    return detect_ms, normalise_ms, found


def time_reading(repeats: int) -> list[float]:
    """Milliseconds for the worker to find, landmark, embed and measure the face in a 512x512 output."""
    from worker.faces import get_analyser  # the worker's models: not the web process's

    analyser = get_analyser()
    picture = Image.open(FIXTURES / "portrait.jpg").convert("RGB")
    analyser.read(picture)
    times = []
    for _ in track(range(repeats), description="reading an output's face", transient=True):
        started = time.perf_counter()
        analyser.read(picture)
        times.append((time.perf_counter() - started) * 1000)
    return times


def run(short: bool) -> list[Figure]:
    repeats = 15 if short else 60
    warm_up()
    selfie_ms, normalise_ms, faces = time_detection(phone_photo("selfie_rotated_gps.jpg"), repeats,
                                                    "detecting faces in a 12 MP selfie")
    group_ms, _, group_faces = time_detection(phone_photo("two_people.jpg"), repeats,
                                              "detecting faces in a 12 MP photo of two people")
    empty_ms, _, _ = time_detection(phone_photo("no_face.jpg"), repeats, "a 12 MP photo with no face")
    reading_ms = time_reading(repeats)
    p95 = percentile(selfie_ms, 0.95)
    return [
        Figure(f"face detection at upload, 12 MP selfie, p50 ({faces} face)", statistics.median(selfie_ms), "ms"),
        Figure("face detection at upload, 12 MP selfie, p95", p95, "ms", f"<= {DETECT_BUDGET_MS:.0f} ms",
               p95 <= DETECT_BUDGET_MS),
        Figure(f"face detection, 12 MP photo of two people, p95 ({group_faces} faces)",
               percentile(group_ms, 0.95), "ms", f"<= {DETECT_BUDGET_MS:.0f} ms",
               percentile(group_ms, 0.95) <= DETECT_BUDGET_MS),
        Figure("face detection, 12 MP photo with no face (both passes), p95", percentile(empty_ms, 0.95), "ms"),
        Figure("decoding and re-encoding the 12 MP upload (for scale), p50", statistics.median(normalise_ms), "ms"),
        Figure("worker: reading an output's face (find, landmarks, embed, skin tone), p50",
               statistics.median(reading_ms), "ms"),
    ]
