"""Every picture says it is AI-made: a visible label, XMP/EXIF metadata and a watermark."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatarapp.provenance import c2pa_read, metadata, watermark
from tests.helpers import FIXTURES, new_guest, store_picture

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stored_output(packs):
    """A picture stored the way the worker stores it, for a Hindi-speaking guest."""
    api = new_guest(language="hi")
    # A light picture with some texture, so a dark label shows and the watermark has detail to live in.
    base = np.asarray(Image.open(FIXTURES / "portrait.png").convert("RGB")).astype(int)
    raw = Image.fromarray((150 + base // 3).astype(np.uint8))
    _, _, output = store_picture(api, "avatar", raw)
    return api, output, raw


def fetch(api, url) -> bytes:
    response = api.client.get(url, headers=api.headers())
    assert response.status_code == 200
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_output_carries_the_iptc_source_type_and_exif_fields(stored_output):
    api, output, _ = stored_output
    image = Image.open(io.BytesIO(fetch(api, f"/api/v1/outputs/{output.id}/image")))
    found = metadata.read_provenance(image)
    assert found["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
    assert "Chhavi" in found["software"]
    assert "AI-generated" in found["description"] and "avatar" in found["description"]


def test_the_visible_label_is_drawn_in_a_corner(stored_output):
    api, output, raw = stored_output
    image = Image.open(io.BytesIO(fetch(api, f"/api/v1/outputs/{output.id}/image"))).convert("RGB")
    changed = np.abs(np.asarray(image).astype(int) - np.asarray(raw).astype(int)).sum(axis=2) > 60
    corner = changed[-60:, -300:]
    elsewhere = changed[:300, :300]
    assert corner.mean() > 0.2, "no label in the bottom-right corner"
    assert elsewhere.mean() < 0.01, "the picture itself was visibly changed"


def test_the_watermark_names_the_output_after_jpeg_and_downscaling(stored_output):
    api, output, _ = stored_output
    image = Image.open(io.BytesIO(fetch(api, f"/api/v1/outputs/{output.id}/image"))).convert("RGB")
    expected = f"{watermark.short_id_of(output.id):08x}"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    assert watermark.read(Image.open(io.BytesIO(buffer.getvalue()))).short_id_hex == expected
    half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    assert watermark.read(half).short_id_hex == expected


def test_an_unmarked_image_has_no_watermark():
    for name in ("portrait.png", "portrait.jpg", "selfie_rotated_gps.jpg"):
        assert not watermark.read(Image.open(FIXTURES / name)).found, name


def test_verify_image_reports_metadata_and_the_watermarked_output(stored_output, tmp_path, settings):
    api, output, _ = stored_output
    path = tmp_path / "shared.jpg"
    image = Image.open(io.BytesIO(fetch(api, f"/api/v1/outputs/{output.id}/image")))
    image.convert("RGB").save(path, "JPEG", quality=75, exif=image.getexif().tobytes(), xmp=image.info["xmp"])
    from django.core.management import call_command

    out = io.StringIO()
    call_command("verify_image", str(path), stdout=out)
    report = out.getvalue()
    assert "trainedAlgorithmicMedia" in report
    assert "watermark: found" in report
    assert str(output.id) in report

    plain = io.StringIO()
    with pytest.raises(SystemExit) as exit_status:  # 1: not found (see the command's docstring)
        call_command("verify_image", str(FIXTURES / "portrait.jpg"), stdout=plain)
    assert exit_status.value.code == 1
    assert "watermark: not found" in plain.getvalue()
    assert "digital source type: none" in plain.getvalue()


def test_the_output_carries_a_signed_c2pa_manifest_naming_ai_as_its_source(stored_output, tmp_path):

    api, output, _ = stored_output
    data = fetch(api, f"/api/v1/outputs/{output.id}/image")
    manifest = c2pa_read.read(data, "image/webp")
    assert manifest is not None
    assert manifest["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
    assert "Chhavi" in manifest["claim_generator"]
    # Light enough for a phone: the manifest carries no second copy of the picture.
    assert len(data) < 300 * 1024
    # Signed by this server's own local root until the operator configures a trusted certificate.
    assert set(manifest["validation"]) <= {"valid", "signingCredential.untrusted"}
    # The embedded XMP/EXIF and the watermark survive the manifest being added.
    image = Image.open(io.BytesIO(data))
    assert metadata.read_provenance(image)["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
    assert watermark.read(image).found
    path = tmp_path / "out.webp"
    path.write_bytes(data)
    from django.core.management import call_command

    report = io.StringIO()
    call_command("verify_image", str(path), stdout=report)
    assert "C2PA manifest: by Chhavi" in report.getvalue()
