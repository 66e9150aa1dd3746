"""Tell whether an image was made here: its embedded metadata and its invisible watermark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from PIL import Image, UnidentifiedImageError

from avatarapp.jobs.models import Output
from avatarapp.provenance import c2pa_read, metadata, watermark


class Command(BaseCommand):
    help = "Report an image's AI provenance metadata and whether Chhavi's watermark is in it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, file: Path, **options: Any) -> None:
        try:
            image = Image.open(file)
            image.load()
        except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
            raise CommandError(f"cannot read {file}: {e}") from None
        found = metadata.read_provenance(image)
        is_ai = found["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
        self.stdout.write(f"file: {file} ({image.format}, {image.width}x{image.height})")
        self.stdout.write(f"digital source type: {found['digital_source_type'] or 'none'}"
                          + (" (AI-generated)" if is_ai else ""))
        self.stdout.write(f"EXIF Software: {found['software'] or 'none'}")
        self.stdout.write(f"EXIF ImageDescription: {found['description'] or 'none'}")
        mime = Image.MIME.get(image.format or "", "image/jpeg")
        manifest = c2pa_read.read(file.read_bytes(), mime)
        if manifest:
            self.stdout.write(f"C2PA manifest: by {manifest['claim_generator']}, digital source type "
                              f"{manifest['digital_source_type']}, validation: {', '.join(manifest['validation'])}")
        else:
            self.stdout.write("C2PA manifest: none")
        reading = watermark.read(image)
        short_id_hex = reading.short_id_hex  # set exactly when the watermark was found
        if reading.found and short_id_hex is not None:
            # The short id is the first 8 hex digits of the output's UUID (the part before the first dash).
            matches = list(Output.objects.filter(id__startswith=short_id_hex))
            self.stdout.write(f"watermark: found, output {short_id_hex} (agreement {reading.agreement:.2f})")
            for output in matches:
                self.stdout.write(f"  matches output {output.id} of job {output.job_id}")
            if not matches:
                self.stdout.write("  no output with this id on this server")
        else:
            self.stdout.write(f"watermark: not found (agreement {reading.agreement:.2f})")
