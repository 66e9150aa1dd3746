"""The invisible mark outlives what sharing does, unmarked pictures read "not found", every shared picture
carries it, and verify_image always answers with a status scripts can use.

One case per attack family here; the suite's full range of parameters, and the measured
rates, live in bench/watermark.py (`python -m bench --only watermark`).
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from PIL import Image, ImageOps

from avatarapp.lib.storage_keys import card_key
from avatarapp.provenance import c2pa_read, metadata, reader, rivagan, watermark
from bench.watermark import ATTACKS, crop, demo_like, jpeg, rescale, rotate, screenshot
from tests.helpers import FIXTURES, new_guest, store_picture
from worker.provenance.card import make_card
from worker.provenance.rivagan_encoder import encoder
from worker.provenance.watermark_embed import embed, embed_dct

ROOT = Path(__file__).resolve().parent.parent
SHORT_ID = 0x7A31C0DE  # as if an output of this server: its reader confirms RivaGAN readings against it


def known(word: int) -> bool:
    return word == SHORT_ID


@pytest.fixture(scope="module")
def marked() -> dict[str, Image.Image]:
    portrait = Image.open(FIXTURES / "portrait.jpg").convert("RGB")
    return {"portrait": embed(portrait, SHORT_ID), "demo output": embed(demo_like(7, 512), SHORT_ID)}


# One case of each family of the bench's suite (it holds them all: ATTACKS).
FAMILY_CASES = {
    "jpeg": jpeg(60),
    "rescale": rescale(0.63),
    "crop": crop(0.88, "left"),
    "centre crop": crop(0.8, "centre"),
    "mirror": ImageOps.mirror,
    "rotation": rotate(4.0),
    "colour": dict(ATTACKS["colour"])["contrast 1.25"],
    "screenshot": screenshot,
}
# Only RivaGAN outlives crops and the screenshot's padding, and it cannot read the demo model's
# noise-like colour fields (see the README's measured figures): a known limit, kept visible here.
RIVAGAN_ONLY = {"crop", "centre crop", "screenshot"}
CASES = [pytest.param(picture, family, marks=[pytest.mark.xfail(
             reason="RivaGAN does not read the demo model's noise-like pictures", strict=False)]
             if picture == "demo output" and family in RIVAGAN_ONLY else [])
         for family in FAMILY_CASES for picture in ("portrait", "demo output")]


@pytest.mark.parametrize(("picture", "family"), CASES)
def test_the_id_is_read_back_after_each_family_of_attack(marked, picture, family):
    finding = reader.find(FAMILY_CASES[family](marked[picture]), known)
    assert finding.found and finding.short_id == SHORT_ID, (picture, family, finding)


def test_the_workers_encoder_is_the_packages_network():
    """The worker runs RivaGAN's encoder with torch, from the weights in the package's ONNX file: the same
    marked frame as onnxruntime gives, to well under a grey level."""
    frame = rivagan.to_frame(rivagan.canonical_rgb(Image.open(FIXTURES / "two_people.jpg")))
    bits = rivagan.id_bits(SHORT_ID)[None]
    by_onnx = rivagan.session("encoder").run(None, {"frame": frame, "data": bits})[0]
    assert by_onnx.shape == encoder()(frame, bits).shape
    assert float(np.abs(encoder()(frame, bits) - by_onnx).max()) * 127.5 < 0.01


def test_the_dct_layer_names_the_id_alone_after_jpeg_rescale_mirror_and_tilt(marked):
    # No server to confirm it: the self-checking layer answers, whoever asks.
    for attack in (jpeg(70), rescale(0.45), ImageOps.mirror, rotate(-2.0)):
        finding = reader.find(attack(marked["portrait"]))
        assert (finding.layer, finding.short_id) == ("dct", SHORT_ID)


@pytest.mark.parametrize("name", ["portrait.jpg", "portrait.png", "other_person.jpg", "two_people.jpg",
                                  "no_face.jpg", "selfie_wide.jpg", "demo output 1", "demo output 2"])
def test_an_unmarked_picture_reads_not_found(name):
    image = demo_like(int(name[-1]), 512) if name.startswith("demo") else Image.open(FIXTURES / name)
    # Even a server that knew every id the RivaGAN layer could read here would not be fooled often;
    # this one knows a thousand.
    ids = {SHORT_ID, *range(1000)}
    assert not reader.find(image, ids.__contains__).found


def test_the_thumbnail_carries_the_mark(db, packs):
    api = new_guest()
    _, _, output = store_picture(api, "avatar", Image.open(FIXTURES / "portrait.jpg").convert("RGB"))
    with default_storage.open(output.thumbnail_key, "rb") as f:
        thumbnail = Image.open(io.BytesIO(f.read()))
    assert reader.find(thumbnail).short_id == watermark.short_id_of(output.id)


def shared_output(packs):
    api = new_guest()
    _, _, output = store_picture(api, "avatar", Image.open(FIXTURES / "portrait.jpg").convert("RGB"))
    token = api.post(f"/outputs/{output.id}/shares", {}).json()["token"]
    return output, token


def test_the_share_card_carries_the_mark_and_a_c2pa_manifest(db, packs):
    output, token = shared_output(packs)
    response = Client().get(f"/s/{token}/card.jpg")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    card = Image.open(io.BytesIO(response.content))
    assert card.size == (1200, 630) and len(response.content) <= 300 * 1024
    assert reader.find(card).short_id == watermark.short_id_of(output.id)
    manifest = c2pa_read.read(response.content, "image/jpeg")
    assert manifest is not None and manifest["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
    assert set(manifest["validation"]) <= {"valid", "signingCredential.untrusted"}
    # Recompressed as a messenger would, it still names the output.
    assert reader.find(jpeg(60)(card.convert("RGB"))).short_id == watermark.short_id_of(output.id)


def test_a_missing_card_is_made_by_the_worker_and_the_picture_stands_in_meanwhile(db, packs, monkeypatch):
    output, token = shared_output(packs)
    default_storage.delete(card_key(output.user_id, output.id))  # as after its last link was taken down
    sent = []
    monkeypatch.setattr("avatarapp.sharing.cards.app.send_task", lambda name, **kw: sent.append((name, kw)))
    response = Client().get(f"/s/{token}/card.jpg")
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    standing_in = Image.open(io.BytesIO(response.content))
    assert reader.find(standing_in).short_id == watermark.short_id_of(output.id)
    assert sent == [("worker.tasks.make_share_card", {"args": [str(output.id)], "queue": "maintenance"})]
    # The worker's task (run here in-process) makes it; from then on the card is served.
    assert make_card(str(output.id)) is True
    assert make_card(str(output.id)) is False  # already there: nothing to do
    card = Client().get(f"/s/{token}/card.jpg")
    assert card["Content-Type"] == "image/jpeg" and Image.open(io.BytesIO(card.content)).size == (1200, 630)


def test_the_share_page_answers_when_the_broker_is_down(db, packs, monkeypatch):
    output, token = shared_output(packs)
    default_storage.delete(card_key(output.user_id, output.id))

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("avatarapp.sharing.cards.app.send_task", broker_down)
    assert Client().get(f"/s/{token}").status_code == 200
    assert Client().get(f"/s/{token}/card.jpg").status_code == 200


def verify(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_image", str(path), stdout=out)
    except SystemExit as e:
        return int(e.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_verify_image_finds_an_output_of_this_server(db, packs, tmp_path):
    api = new_guest()
    _, _, output = store_picture(api, "avatar", Image.open(FIXTURES / "portrait.jpg").convert("RGB"))
    with default_storage.open(output.storage_key, "rb") as f:
        shared = ImageOps.mirror(rescale(0.7)(Image.open(io.BytesIO(f.read())).convert("RGB")))
    shared.save(tmp_path / "shared.jpg", "JPEG", quality=70)  # metadata stripped, as messengers do
    status, report = verify(tmp_path / "shared.jpg")
    assert status == 0, report
    assert f"made on this server, output {watermark.short_id_of(output.id):08x}" in report
    assert str(output.id) in report


def test_verify_image_on_a_marked_picture_of_another_server(db, tmp_path):
    jpeg(75)(embed(Image.open(FIXTURES / "other_person.jpg"), 0x0BADCAFE)).save(tmp_path / "elsewhere.png")
    status, report = verify(tmp_path / "elsewhere.png")
    assert status == 3
    assert report.splitlines()[-1] == "verdict: marked by a Chhavi server, output 0badcafe, not on this server"


def test_verify_image_on_an_unmarked_picture(db):
    status, report = verify(FIXTURES / "two_people.jpg")
    assert status == 1 and report.splitlines()[-1] == "verdict: not found"


@pytest.mark.parametrize("content", [b"", b"not a picture at all", (FIXTURES / "portrait.jpg").read_bytes()[:4000]])
def test_verify_image_on_a_corrupt_or_missing_file(db, tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    status, report = verify(path)
    assert status == 2 and report.startswith("verdict:") and "not a readable image" in report
    status, report = verify(tmp_path / "absent.jpg")
    assert status == 2 and "cannot read" in report


def test_verify_image_without_a_migrated_database(tmp_path):
    """A fresh server, its database never migrated: the self-checking layer still names the output."""
    picture = tmp_path / "marked.png"
    embed(Image.open(FIXTURES / "portrait.jpg"), 0x0BADCAFE).save(picture)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    env.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "manage.py", "verify_image", str(picture)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("verdict: marked by a Chhavi server, output 0badcafe; this server's database could not")


def test_a_crop_is_named_only_when_this_server_knows_the_output(marked):
    cropped = crop(0.8, "centre")(marked["portrait"])
    assert reader.find(cropped, known) == reader.Finding(True, SHORT_ID, "rivagan", "as is",
                                                          reader.find(cropped, known).agreement)
    # RivaGAN carries no check of its own: without the server's word, a crop reads "not found".
    assert not reader.find(cropped).found
    assert not reader.find(cropped, lambda word: False).found


def test_a_corner_crop_is_read_back_where_only_the_smaller_reading_sees_it():
    # A crop keeping 70 % of the area from a corner enlarges RivaGAN's pattern by a fifth once the picture is
    # brought to the canonical size; for this id the reading as it is loses a bit, the 10 % smaller one does not.
    short_id = 0xCFBEC2F8
    cropped = crop(0.7, "corner")(embed(Image.open(FIXTURES / "portrait.jpg").convert("RGB"), short_id))
    finding = reader.find(cropped, lambda word: word == short_id)
    assert (finding.found, finding.short_id, finding.layer) == (True, short_id, "rivagan")


def test_a_picture_marked_before_the_layers_is_still_named_by_its_server():
    old = jpeg(85)(embed_dct(Image.open(FIXTURES / "portrait.jpg"), SHORT_ID, watermark.LEGACY_CHECK_BITS))
    finding = reader.find(old, known)
    assert (finding.found, finding.short_id, finding.layer) == (True, SHORT_ID, "dct (16-bit check, before RivaGAN)")
    assert not reader.find(old).found  # its 16-bit check alone is too weak to answer for other servers
