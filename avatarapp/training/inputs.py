"""The pictures of a training run: read from a folder, checked as uploads are, captioned.

Every picture goes through the upload path's own decoder (avatarapp/photos/normalize.py):
checked by content, decompression bombs and truncated or mislabelled files refused, turned
upright and re-encoded without metadata. Only the re-encoded pictures reach the worker. A style
pack needs no faces, so there is no face check. Any file that is not a picture (other than
the `.txt` captions) refuses the whole folder, naming it: training quietly on part of what the
operator meant would be worse than a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avatarapp.photos.normalize import UploadRejected, normalise_upload

CAPTION_SUFFIX = ".txt"
MAX_CAPTION = 500


class TrainingInputError(ValueError):
    """Input a training run cannot start from, with a message that says what to fix."""


@dataclass
class Picture:
    name: str  # the source file's name
    data: bytes  # the re-encoded JPEG
    caption: str


def read_caption(path: Path, default: str) -> str:
    sidecar = path.with_suffix(CAPTION_SUFFIX)
    if not sidecar.is_file():
        return default
    try:
        text = " ".join(sidecar.read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError) as e:
        raise TrainingInputError(f"{sidecar}: cannot read the caption as UTF-8 text ({e})") from None
    if not text:
        return default
    if len(text) > MAX_CAPTION:
        raise TrainingInputError(f"{sidecar}: the caption is longer than {MAX_CAPTION} characters")
    return text


def read_pictures(folder: Path, default_caption: str) -> list[Picture]:
    """Every picture in `folder` (not its sub-folders) with its caption, or TrainingInputError."""
    if not folder.is_dir():
        raise TrainingInputError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in files if p.suffix.lower() != CAPTION_SUFFIX]
    if not candidates:
        raise TrainingInputError(f"{folder} has no pictures in it (JPEG, PNG, WebP or HEIC, with an optional "
                                 f".txt caption of the same name beside each)")
    pictures, problems = [], []
    for path in candidates:
        try:
            data = path.read_bytes()
            image = normalise_upload(data)
        except UploadRejected as e:
            problems.append(f"{path.name}: {e.message} ({e.reason})")
            continue
        except OSError as e:
            problems.append(f"{path.name}: cannot be read ({e.strerror})")
            continue
        pictures.append(Picture(name=path.name, data=image.data, caption=read_caption(path, default_caption)))
    if problems:
        raise TrainingInputError(f"{len(problems)} file(s) in {folder} are not pictures that can be used; remove "
                                 f"or replace them:\n  " + "\n  ".join(problems))
    return pictures
