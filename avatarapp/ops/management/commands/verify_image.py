"""Tell whether an image was made here: its embedded metadata, its C2PA manifest and its invisible mark.

    python manage.py verify_image picture.jpg

The last line is the verdict; the exit status says the same for scripts:

    0  marked, and the output is on this server
    1  not found: no Chhavi mark (metadata and manifest are reported above it either way)
    2  the file cannot be read as an image (or the command was called wrongly)
    3  marked by a Chhavi server, but the output is not on this server (or its database is unavailable)

It never needs the database to answer: without one (not migrated, unreachable) the DCT
layer, which checks itself, still names the output, and the verdict says the database
could not be asked.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError
from PIL import Image

from avatarapp.jobs.models import Output
from avatarapp.provenance import c2pa_read, metadata, reader

FOUND_HERE, NOT_FOUND, UNREADABLE, MARKED_ELSEWHERE = 0, 1, 2, 3


class OutputIndex:
    """This server's outputs by short id, asked lazily; remembers whether the database could answer."""

    def __init__(self) -> None:
        self.error: str | None = None

    def matches(self, short_id_hex: str) -> list[Output]:
        if self.error:
            return []
        try:
            # The short id is the first 8 hex digits of the output's UUID (the part before the first dash).
            return list(Output.objects.filter(id__startswith=short_id_hex).select_related("job"))
        except DatabaseError as e:  # not migrated, unreachable, locked: the mark still answers
            self.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return []

    def knows(self, short_id: int) -> bool:
        return bool(self.matches(f"{short_id:08x}"))


def open_image(data: bytes) -> Image.Image | str:
    """The decoded picture, or why it cannot be read."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        image.convert("RGB")  # decodes everything: a truncated file fails here, not mid-read
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for a damaged file; all mean "unreadable"
        return f"{type(e).__name__}: {e}"
    return image


class Command(BaseCommand):
    help = "Report an image's AI provenance (metadata, C2PA, Chhavi's invisible mark). Exit 0 found here, " \
           "1 not found, 2 unreadable, 3 marked by a Chhavi server but not on this one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, file: Path, **options: Any) -> None:
        status = self.verify(file)
        if status != FOUND_HERE:
            sys.exit(status)

    def say(self, line: str) -> None:
        self.stdout.write(line)

    def verify(self, file: Path) -> int:
        try:
            data = file.read_bytes()
        except OSError as e:
            self.say(f"verdict: cannot read {file}: {e.strerror or e}")
            return UNREADABLE
        image = open_image(data)
        if isinstance(image, str):
            self.say(f"verdict: {file} is not a readable image ({image})")
            return UNREADABLE
        self.report_labels(file, image, data)
        return self.report_mark(image)

    def report_labels(self, file: Path, image: Image.Image, data: bytes) -> None:
        found = metadata.read_provenance(image)
        is_ai = found["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
        self.say(f"file: {file} ({image.format}, {image.width}x{image.height})")
        source = found["digital_source_type"] or "none"
        self.say(f"digital source type: {source}" + (" (AI-generated)" if is_ai else ""))
        self.say(f"EXIF Software: {found['software'] or 'none'}")
        self.say(f"EXIF ImageDescription: {found['description'] or 'none'}")
        manifest = c2pa_read.read(data, Image.MIME.get(image.format or "", "image/jpeg"))
        if manifest:
            self.say(f"C2PA manifest: by {manifest['claim_generator']}, digital source type "
                     f"{manifest['digital_source_type']}, validation: {', '.join(manifest['validation'])}")
        else:
            self.say("C2PA manifest: none")

    def report_mark(self, image: Image.Image) -> int:
        index = OutputIndex()
        finding = reader.find(image, index.knows)
        short_id_hex = finding.short_id_hex
        if not finding.found or short_id_hex is None:
            self.say(f"watermark: not found (best DCT agreement {finding.agreement:.2f}; 0.5 is noise)")
            if index.error:
                self.say(f"  (this server's database could not be asked: {index.error}; "
                         "a mark that needs it to confirm the output was not tried)")
            self.say("verdict: not found")
            return NOT_FOUND
        self.say(f"watermark: found, output {short_id_hex} ({finding.layer} layer, {finding.undoing})")
        matches = index.matches(short_id_hex)
        for output in matches:
            self.say(f"  matches output {output.id} of job {output.job_id}")
        if matches:
            self.say(f"verdict: made on this server, output {short_id_hex}")
            return FOUND_HERE
        if index.error:
            self.say(f"verdict: marked by a Chhavi server, output {short_id_hex}; this server's database "
                     f"could not be asked ({index.error})")
        else:
            self.say(f"verdict: marked by a Chhavi server, output {short_id_hex}, not on this server")
        return MARKED_ELSEWHERE
