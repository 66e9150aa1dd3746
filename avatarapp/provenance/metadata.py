"""Embedded provenance: XMP (IPTC DigitalSourceType) and EXIF fields that say "AI-made".

India's IT Amendment Rules (in force 20 February 2026) ask for synthetic images
to carry embedded metadata. We write the IPTC digital source type
``trainedAlgorithmicMedia`` in XMP, and EXIF Software / ImageDescription that
name the generator, into every output and every share card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID
from xml.sax.saxutils import escape

from django.conf import settings
from PIL import Image

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "Chhavi"
EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131


@dataclass
class Provenance:
    output_short_id: str
    pack: str
    model: str

    @property
    def software(self) -> str:
        return f"{GENERATOR} (model: {self.model})"

    @property
    def description(self) -> str:
        return (f"AI-generated image made by {GENERATOR} with the '{self.pack}' style; "
                f"output {self.output_short_id}")


def provenance_for(output_id: UUID | str, pack_slug: str) -> Provenance:
    model = str(settings.AVATAR_BASE_MODEL).rstrip("/").rsplit("/", 1)[-1]
    return Provenance(output_short_id=str(output_id).replace("-", "")[:8], pack=pack_slug, model=model)


def build_xmp(p: Provenance) -> bytes:
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"
    xmp:CreatorTool="{escape(p.software)}">
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(p.description)}</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


def build_exif(p: Provenance) -> bytes:
    exif = Image.Exif()
    exif[EXIF_SOFTWARE] = p.software
    exif[EXIF_IMAGE_DESCRIPTION] = p.description
    return exif.tobytes()


def save_args(p: Provenance) -> dict:
    """Keyword arguments for Image.save (WebP and JPEG both take them)."""
    return {"exif": build_exif(p), "xmp": build_xmp(p)}


def read_provenance(image: Image.Image) -> dict:
    """What an image says about itself: digital source type, EXIF software and description."""
    xmp = image.info.get("xmp") or b""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    match = re.search(rb'DigitalSourceType="([^"]+)"', xmp) or re.search(
        rb"<Iptc4xmpExt:DigitalSourceType>([^<]+)<", xmp)
    exif = image.getexif()
    return {
        "digital_source_type": match.group(1).decode() if match else None,
        "software": exif.get(EXIF_SOFTWARE),
        "description": exif.get(EXIF_IMAGE_DESCRIPTION),
    }
