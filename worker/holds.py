"""Test hooks that hold the worker at a named point while a file exists.

With AVATAR_HOLD_FILE set (tests only; empty turns every hook off), the worker waits at
`hold_at("store")` while `<AVATAR_HOLD_FILE>.store` exists, and `<…>.store.waiting` exists
while it waits, so a test acts at exactly that moment instead of racing the clock.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings

POLL = 0.02  # seconds between looks at the hold file


def hold_at(point: str) -> None:
    """Wait while `<AVATAR_HOLD_FILE>.<point>` exists (a no-op without AVATAR_HOLD_FILE)."""
    if not settings.AVATAR_HOLD_FILE:
        return
    hold = Path(f"{settings.AVATAR_HOLD_FILE}.{point}")
    waiting = Path(f"{hold}.waiting")
    if hold.exists():
        waiting.touch()
        try:
            while hold.exists():
                time.sleep(POLL)
        finally:
            waiting.unlink(missing_ok=True)
