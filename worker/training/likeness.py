"""A likeness model: DreamBooth-style LoRA training on one person's selfies, and what it is stored as.

The first chunk reads the person's selfies from storage, crops each around its one face, and
makes the class pictures of prior preservation with the base model itself (the class prompt from
a plain grey start at full strength: text to image, nothing of the person in them). Both are
encoded once (core.encode_samples) and only their latents are kept with the run; the crops
never touch disk. Training then runs in chunks like a style pack's (worker/training/chunks.py).

The last chunk stores the LoRA under the person's storage prefix (private: no URL serves it,
and erasing the account deletes it), measures its likeness report, and removes the run's
folder (latents of the face and checkpoints) at once.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image
from safetensors.torch import load as load_safetensors

from avatarapp.faces.framing import face_crop
from avatarapp.lib.storage_keys import likeness_key
from avatarapp.photos.models import Photo
from avatarapp.training.models import TrainingRun
from worker.engine import Engine, EngineError, GenerationRequest
from worker.faces import FaceReading, get_analyser, likeness
from worker.training import core
from worker.training.pack import GENERATION_DEFAULTS

log = logging.getLogger(__name__)

GREY = (127, 127, 127)
REPORT_PROMPT = "{subject}, photo, natural light"


def stored_selfies(run: TrainingRun) -> list[tuple[Photo, Image.Image]]:
    """The run's selfies that are still stored and usable, with their pictures, in the order chosen."""
    ids = [sample["photo"] for sample in run.samples]
    # Past their expiry too: the retention sweep keeps the selfies of a run in training until it ends.
    photos = {str(p.id): p for p in Photo.objects.filter(id__in=ids, user_id=run.owner_id)}
    found = []
    for photo_id in ids:
        photo = photos.get(photo_id)
        if photo is None:
            continue
        try:
            with default_storage.open(photo.storage_key, "rb") as f:
                image = Image.open(io.BytesIO(f.read()))
                image.load()
        except (FileNotFoundError, OSError):
            continue
        found.append((photo, image.convert("RGB")))
    return found


def face_crops(selfies: list[tuple[Photo, Image.Image]]) -> list[Image.Image]:
    crops = []
    for photo, image in selfies:
        boxes = photo.face_boxes
        if len(boxes) == 1:
            crops.append(image.crop(face_crop(boxes[0], image.width, image.height).as_tuple()))
    return crops


def class_pictures(engine: Engine, run: TrainingRun, resolution: int, beat: Callable[[], None]) -> list[Image.Image]:
    """The prior-preservation pictures: the class prompt made by the base model, no pack, no person."""
    count = int(run.settings.get("class_pictures", 100))
    defaults = GENERATION_DEFAULTS[run.base_family]
    seed = int(run.settings.get("seed", 0))
    pictures: list[Image.Image] = []
    batch = settings.AVATAR_MAX_BATCH
    for start in range(0, count, batch):
        seeds = [(seed * 7919 + n) % 2**32 for n in range(start, min(count, start + batch))]
        request = GenerationRequest(
            images=[Image.new("RGB", (resolution, resolution), GREY)] * len(seeds),
            prompt=run.class_prompt, negative_prompt="",
            seeds=seeds, steps=int(defaults["steps"]), guidance=float(defaults["guidance"]), strength=1.0,
            width=resolution, height=resolution)
        with engine.lock:
            engine.switch_pack(None)
            pictures += engine.generate(request)
        beat()
    return pictures


def encode_likeness(engine: Engine, run: TrainingRun, train_settings: core.TrainSettings,
                    beat: Callable[[], None]) -> core.Encoded:
    """The face crops with the instance prompt, and the class pictures with the class prompt, encoded."""
    crops = face_crops(stored_selfies(run))
    if len(crops) < settings.AVATAR_LIKENESS_MIN_PHOTOS:
        raise EngineError(f"only {len(crops)} of the {len(run.samples)} selfies are still stored with one face "
                          f"(at least {settings.AVATAR_LIKENESS_MIN_PHOTOS} are needed)")
    samples = [core.Sample(crop, run.caption) for crop in crops]
    encoded = core.encode_samples(engine, samples, train_settings.resolution, on_picture=beat)
    classes = class_pictures(engine, run, train_settings.resolution, beat)
    encoded.prior = core.encode_samples(engine, [core.Sample(p, run.class_prompt) for p in classes],
                                        train_settings.resolution, on_picture=beat)
    return encoded


def lora_bytes(engine: Engine, lora: dict[str, Any]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return core.save_lora(engine, lora, Path(folder), "likeness.safetensors").read_bytes()


def store_lora(engine: Engine, run: TrainingRun, lora: dict[str, Any]) -> tuple[str, bytes]:
    """The LoRA in diffusers' format under the person's prefix; its key and bytes."""
    data = lora_bytes(engine, lora)
    key = likeness_key(run.owner_id, run.id)
    default_storage.delete(key)  # a repeated chunk overwrites rather than adding a second file
    default_storage.save(key, ContentFile(data))
    return key, data


def mean_likeness(readings: list[FaceReading | None], references: list[FaceReading]) -> float | None:
    scores = [sum(likeness(r, ref) for ref in references) / len(references) for r in readings if r is not None]
    return round(sum(scores) / len(scores), 3) if scores else None


def likeness_report(engine: Engine, run: TrainingRun, data: bytes) -> dict[str, Any]:
    """Likeness to the selfies of pictures made from the first selfie with the same seeds, without and
    with the model: whether training made pictures more like the person, measured, not assumed."""
    count = settings.AVATAR_LIKENESS_REPORT_PICTURES
    report: dict[str, Any] = {"pictures": count}
    if not count:
        return report | {"note": "not measured (AVATAR_LIKENESS_REPORT_PICTURES is 0)"}
    selfies = stored_selfies(run)
    if not selfies:
        return report | {"note": "not measured: the selfies are no longer stored"}
    analyser = get_analyser()
    references = [r for photo, image in selfies
                  if (r := analyser.read(image, photo.face_boxes[0] if photo.face_boxes else None)) is not None]
    photo, image = selfies[0]
    defaults = GENERATION_DEFAULTS[run.base_family]
    side = run.settings.get("resolution", 512)
    source = image.crop(photo.crop(1.0).as_tuple())
    seeds = [(int(run.settings.get("seed", 0)) + n) % 2**32 for n in range(count)]

    def make(subject: str) -> GenerationRequest:
        return GenerationRequest(images=[source] * count, prompt=REPORT_PROMPT.format(subject=subject),
                                 negative_prompt="", seeds=seeds, steps=int(defaults["steps"]),
                                 guidance=float(defaults["guidance"]), strength=float(defaults["strength"]),
                                 width=side, height=side)
    try:
        engine.load_likeness(str(run.id), lambda: load_safetensors(data), keep=settings.AVATAR_LIKENESS_RESIDENT)
        with engine.lock:
            engine.switch_pack(None)
            without = engine.generate(make(f"a {run.class_noun}"))
            engine.switch_pack(None, likeness=(str(run.id), settings.AVATAR_LIKENESS_WEIGHT))
            with_model = engine.generate(make(f"{run.instance_token} {run.class_noun}"))
    except EngineError as e:
        return report | {"note": f"not measured: {e}"}
    readings_without = [analyser.read(picture) for picture in without]
    readings_with = [analyser.read(picture) for picture in with_model]
    return report | {
        "without_model": mean_likeness(readings_without, references) if references else None,
        "with_model": mean_likeness(readings_with, references) if references else None,
        "faces_found_without": sum(r is not None for r in readings_without),
        "faces_found_with": sum(r is not None for r in readings_with),
        "note": "" if references else "no face could be read in the selfies",
    }
