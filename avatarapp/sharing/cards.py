"""Share preview cards: where they live in storage, how they are drawn, and who makes them.

A card is a picture that travels (WhatsApp and Instagram show it as the link's
preview), so it carries what every shared picture carries: the invisible mark and a
C2PA manifest. Both are the worker's to write (the web process never loads the
watermark networks nor the C2PA signing library), so the worker makes each card:
when it stores the output (worker/outputs.py) and, if the card has gone since (its
last link was taken down, or the retention sweep removed it), when a share page asks
for it again (the `make_share_card` task). Until then the card URL serves the output
picture itself, which carries the same mark and manifest.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from django.core.files.storage import default_storage
from PIL import Image

from avatarapp.celery import MAKE_CARD_TASK, app
from avatarapp.jobs.models import Output
from avatarapp.lib.storage_keys import card_key
from avatarapp.provenance.metadata import Provenance, save_args

log = logging.getLogger(__name__)

CARD_SIZE = (1200, 630)
CARD_MAX_BYTES = 300 * 1024
BRAND_TOP = (76, 29, 149)
BRAND_BOTTOM = (219, 39, 119)
CARD_QUEUE = "maintenance"


def compose_card(portrait: Image.Image) -> Image.Image:
    """The 1200x630 card: the portrait centred on the brand gradient.

    Social apps crop anything else; 630 px tall with a margin keeps the face whole.
    """
    width, height = CARD_SIZE
    gradient = Image.linear_gradient("L").resize((width, height))
    card = Image.composite(Image.new("RGB", CARD_SIZE, BRAND_BOTTOM), Image.new("RGB", CARD_SIZE, BRAND_TOP), gradient)
    portrait = portrait.convert("RGB")
    portrait.thumbnail((height - 60, height - 60), Image.Resampling.LANCZOS)
    card.paste(portrait, ((width - portrait.width) // 2, (height - portrait.height) // 2))
    return card


def encode_card(card: Image.Image, provenance: Provenance | None = None,
                finish: Callable[[bytes], bytes] | None = None) -> bytes:
    """The card as a progressive JPEG under CARD_MAX_BYTES, `finish` (the C2PA signature) included."""
    extra = save_args(provenance) if provenance else {}
    for quality in (85, 75, 65, 50):
        out = io.BytesIO()
        card.save(out, "JPEG", quality=quality, optimize=True, progressive=True, **extra)
        data = finish(out.getvalue()) if finish else out.getvalue()
        if len(data) <= CARD_MAX_BYTES:
            break
    return data


def stored_card(output: Output) -> bytes | None:
    """The output's card if the worker has made it."""
    try:
        with default_storage.open(card_key(output.user_id, output.id), "rb") as f:
            return f.read()
    except (FileNotFoundError, OSError):
        return None


def request_card(output: Output) -> None:
    """Ask a worker to make the card; a broker that is down only delays the card (the picture stands in)."""
    try:
        app.send_task(MAKE_CARD_TASK, args=[str(output.id)], queue=CARD_QUEUE)
    except Exception:  # noqa: BLE001 - any broker failure: the share page must still answer
        log.warning("could not ask a worker for the card of output %s", output.id, exc_info=True)
