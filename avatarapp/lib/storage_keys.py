"""Where every stored file lives. The one place storage keys are built.

Everything a person owns sits under ``users/<user id>/``, so erasing an account
can delete by that prefix and a file left by a crash or a race is still found.
Keys are deterministic (built from ids), so a repeated task overwrites its own
files instead of adding new ones.
"""

from __future__ import annotations

from uuid import UUID

USERS_ROOT = "users/"


def user_prefix(user_id: UUID | str) -> str:
    return f"{USERS_ROOT}{user_id}/"


def photo_key(user_id: UUID | str, photo_id: UUID | str) -> str:
    return f"{user_prefix(user_id)}photos/{photo_id}.jpg"


def output_key(user_id: UUID | str, job_id: UUID | str, index: int) -> str:
    return f"{user_prefix(user_id)}jobs/{job_id}/{index}.webp"


def thumbnail_key(user_id: UUID | str, job_id: UUID | str, index: int) -> str:
    return f"{user_prefix(user_id)}jobs/{job_id}/{index}_thumb.webp"


def card_key(user_id: UUID | str, output_id: UUID | str) -> str:
    return f"{user_prefix(user_id)}cards/{output_id}.jpg"


PACKS_ROOT = "packs/"


def pack_preview_key(slug: str, version: str) -> str:
    """A style pack's preview rendered by a worker (no person's data: the bundled reference portrait)."""
    return f"{PACKS_ROOT}{slug}/preview-{version}.webp"


def likeness_key(user_id: UUID | str, run_id: UUID | str) -> str:
    """A person's likeness model (a LoRA of their face): private, never served by any URL."""
    return f"{user_prefix(user_id)}likeness/{run_id}.safetensors"
