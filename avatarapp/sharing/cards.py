"""Share preview cards: where they live in storage and how they are drawn."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from avatarapp.jobs.models import Output
from avatarapp.lib.storage_keys import card_key
from avatarapp.provenance.metadata import Provenance, provenance_for, save_args

CARD_SIZE = (1200, 630)
CARD_MAX_BYTES = 300 * 1024
BRAND_TOP = (76, 29, 149)
BRAND_BOTTOM = (219, 39, 119)


def render_card(portrait_bytes: bytes, provenance: Provenance | None = None) -> bytes:
    """A 1200x630 JPEG preview card: the portrait centred on the brand gradient.

    Social apps crop anything else; 630 px tall with a margin keeps the face whole.
    """
    width, height = CARD_SIZE
    gradient = Image.linear_gradient("L").resize((width, height))
    card = Image.composite(Image.new("RGB", CARD_SIZE, BRAND_BOTTOM), Image.new("RGB", CARD_SIZE, BRAND_TOP), gradient)
    with Image.open(io.BytesIO(portrait_bytes)) as opened:
        portrait = opened.convert("RGB")
        portrait.thumbnail((height - 60, height - 60), Image.Resampling.LANCZOS)
        card.paste(portrait, ((width - portrait.width) // 2, (height - portrait.height) // 2))
    extra = save_args(provenance) if provenance else {}
    for quality in (85, 75, 65, 50):
        out = io.BytesIO()
        card.save(out, "JPEG", quality=quality, optimize=True, progressive=True, **extra)
        if out.tell() <= CARD_MAX_BYTES:
            break
    return out.getvalue()


def get_or_render_card(output: Output) -> bytes:
    """The cached card for an output, rendered and stored on first use."""
    key = card_key(output.user_id, output.id)
    try:
        with default_storage.open(key, "rb") as f:
            return f.read()
    except (FileNotFoundError, OSError):
        pass
    with default_storage.open(output.storage_key, "rb") as f:
        portrait = f.read()
    # The card says what the portrait says: same generator, pack and output id.
    data = render_card(portrait, provenance_for(output.id, output.job.pack.slug))
    default_storage.save(key, ContentFile(data))
    return data
