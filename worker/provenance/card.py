"""Make an output's share card: composed as the web side draws it from the marked picture, then marked and signed.

What the card carries: the DCT layer written over the whole card (it reads the card as it is,
recompressed, rescaled or mirrored), and, on the portrait in its middle, the picture's own two
layers, shrunk with it. RivaGAN is not written again over the card: measured on cards of the
fixtures (bench/watermark.py, `card_reads`), a RivaGAN layer over the whole 1200x630 card did not
read back even from the untouched card (two thirds of it are the flat brand gradient, where the
network's pattern carries nothing), so it cost a second encoder run per output for nothing.
"""

from __future__ import annotations

import io
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from avatarapp.jobs.models import Output
from avatarapp.lib.storage_keys import card_key
from avatarapp.provenance.metadata import Provenance, provenance_for
from avatarapp.provenance.watermark import short_id_of
from avatarapp.sharing.cards import compose_card, encode_card
from worker.provenance import c2pa_sign
from worker.provenance.watermark_embed import embed_dct

log = logging.getLogger(__name__)


def card_bytes(portrait: Image.Image, output_id: object, provenance: Provenance) -> bytes:
    """The card JPEG: the DCT layer with the output's id over the whole card (the portrait, already marked,
    keeps its own layers), metadata, C2PA manifest."""
    card = embed_dct(compose_card(portrait), short_id_of(str(output_id)))

    def sign(data: bytes) -> bytes:
        return c2pa_sign.sign(data, "image/jpeg", provenance)

    return encode_card(card, provenance, sign if settings.AVATAR_C2PA else None)


def save_card(user_id: object, output_id: object, data: bytes) -> None:
    key = card_key(str(user_id), str(output_id))
    default_storage.delete(key)  # storage would otherwise save a second file under another name
    default_storage.save(key, ContentFile(data))


def make_card(output_id: str) -> bool:
    """The card of an output that lacks one (the `make_share_card` task); False if there is nothing to do."""
    output = Output.objects.select_related("job__pack").filter(id=output_id).first()
    if output is None or output.flagged or default_storage.exists(card_key(output.user_id, output.id)):
        return False
    try:
        with default_storage.open(output.storage_key, "rb") as f:
            portrait = Image.open(io.BytesIO(f.read()))
            portrait.load()
    except (FileNotFoundError, OSError):
        log.warning("output %s has no picture in storage: no card", output.id)
        return False
    provenance = provenance_for(output.id, output.job.pack.slug)
    save_card(output.user_id, output.id, card_bytes(portrait, output.id, provenance))
    return True
