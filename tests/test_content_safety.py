"""Content safety: an unsafe picture is stored blurred and flagged, never shared, and moderators
clear the queue of flagged pictures and reported share links in the admin.

The diffusers check runs a tiny, randomly initialised StableDiffusionSafetyChecker built here
(the real CompVis weights are the operator's to bring): its concept thresholds make one flag
every picture and another flag none.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import translation
from PIL import Image

from avatarapp.accounts.models import User
from avatarapp.actions.errors import ActionError
from avatarapp.actions.outputs import do_remove_output
from avatarapp.jobs.models import Job, Output
from avatarapp.provenance import metadata
from avatarapp.sharing.models import Report, Share
from tests.conftest import ROOT, WorkerProcess, database_url_for_tests
from tests.helpers import FIXTURES, new_guest, purge_queue, store_picture, wait_for_job
from worker import safety
from worker.errors import EngineError

REFUSAL = "Our content check held this picture back, so it cannot be shared."
NOTICE = "Our content check held this picture back: it is blurred, and it cannot be shared."
MODERATION = "/admin/jobs/moderationitem/"
REPORTS = "/admin/sharing/report/"


# --- Tiny safety checkers ------------------------------------------------------------------


def build_checker(folder: Path, flags_everything: bool) -> Path:
    """A StableDiffusionSafetyChecker with small CLIP dimensions and random weights, saved as the
    CompVis repository lays it out (config.json, model.safetensors, preprocessor_config.json).

    A concept counts when its cosine similarity exceeds its threshold: a similarity is always
    within [-1, 1], so thresholds of -2 flag every picture and of 2 flag none.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(text_config={**small, "vocab_size": 99, "max_position_embeddings": 77},
                        vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=16)
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config).eval()
    threshold = -2.0 if flags_everything else 2.0
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    checker.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkers(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("safety-checkers")
    return {"flags_all": build_checker(root / "flags-all", True),
            "flags_none": build_checker(root / "flags-none", False)}


@pytest.fixture
def check():
    """Set the process's content check for store_output (tests/helpers.store_picture); back to the settings' after."""
    yield safety.set_safety_check
    safety.set_safety_check(None)


class FlagsEverything(safety.SafetyCheck):
    """An operator's own check, named by its dotted path."""

    reason = "house_rules"

    def check(self, images):
        return [True] * len(images)


def detail(image: Image.Image) -> float:
    """Fine detail: mean absolute difference between neighbouring pixels, in the upper-left quarter
    (away from the AI label in the lower-right corner)."""
    pixels = np.asarray(image.convert("L")).astype(float)
    quarter = pixels[: pixels.shape[0] // 2, : pixels.shape[1] // 2]
    return float(np.abs(np.diff(quarter, axis=0)).mean() + np.abs(np.diff(quarter, axis=1)).mean())


def stored_image(key: str) -> Image.Image:
    with default_storage.open(key, "rb") as f:
        image = Image.open(io.BytesIO(f.read()))
        image.load()
    return image


def localised(message: str, language: str) -> str:
    with translation.override(language):
        return translation.gettext(message)


# --- The check itself -----------------------------------------------------------------------


def test_the_diffusers_check_loads_from_a_local_folder_and_flags_as_its_thresholds_say(checkers):
    import torch

    pictures = [Image.open(FIXTURES / "portrait.jpg"), Image.new("RGB", (512, 512), (90, 140, 200))]
    flags_all = safety.DiffusersSafetyCheck.from_folder(checkers["flags_all"], "cpu", torch.float32)
    flags_none = safety.DiffusersSafetyCheck.from_folder(checkers["flags_none"], "cpu", torch.float32)
    assert flags_all.check(pictures) == [True, True] and flags_all.reason == "nsfw"
    assert flags_none.check(pictures) == [False, False]
    assert flags_all.check([]) == []


def test_a_checker_folder_that_is_missing_or_incomplete_is_refused_naming_the_setting(checkers, tmp_path):
    import torch

    with pytest.raises(EngineError, match="AVATAR_SAFETY_CHECKER .* is not a folder"):
        safety.DiffusersSafetyCheck.from_folder(tmp_path / "absent", "cpu", torch.float32)
    incomplete = tmp_path / "no-preprocessor"
    incomplete.mkdir()
    for name in ("config.json", "model.safetensors"):
        (incomplete / name).write_bytes((checkers["flags_all"] / name).read_bytes())
    with pytest.raises(EngineError, match="preprocessor_config.json"):
        safety.check_folder(incomplete)
    # A Stable Diffusion folder's own layout works too: safety_checker/ beside feature_extractor/.
    pipeline = tmp_path / "sd15"
    (pipeline / "feature_extractor").mkdir(parents=True)
    incomplete.rename(pipeline / "safety_checker")
    (pipeline / "feature_extractor" / "preprocessor_config.json").write_bytes(
        (checkers["flags_all"] / "preprocessor_config.json").read_bytes())
    loaded = safety.DiffusersSafetyCheck.from_folder(pipeline / "safety_checker", "cpu", torch.float32)
    assert loaded.check([Image.new("RGB", (64, 64))]) == [True]


def test_with_no_weights_configured_the_check_is_off_with_a_warning_naming_the_setting(caplog, check):
    check(None)
    with caplog.at_level(logging.WARNING, logger="worker.safety"):
        safety.check_configuration()
    [warning] = caplog.records
    assert warning.levelname == "WARNING" and "AVATAR_SAFETY_CHECKER" in warning.getMessage()
    assert isinstance(safety.get_safety_check(), safety.NoCheck)


def test_the_check_is_pluggable_by_dotted_path_and_bad_settings_stop_the_process():
    assert safety.check_class("off") is safety.NoCheck
    assert safety.check_class("diffusers") is safety.DiffusersSafetyCheck
    assert safety.check_class("tests.test_content_safety.FlagsEverything") is FlagsEverything
    with pytest.raises(EngineError, match="not a subclass of worker.safety.SafetyCheck"):
        safety.check_class("os.path.join")
    with pytest.raises(EngineError, match="cannot be imported"):
        safety.check_class("nowhere.Check")

    clean = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_SAFETY")}

    def settings_with(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "import avatarapp.settings"], cwd=ROOT, env={**clean, **env},
                              capture_output=True, text=True, timeout=60)

    refused = settings_with(AVATAR_SAFETY_CHECK="nsfw filter")
    assert refused.returncode != 0 and "Unexpected value AVATAR_SAFETY_CHECK=nsfw filter" in refused.stderr
    refused = settings_with(AVATAR_SAFETY_CHECK="diffusers")
    assert refused.returncode != 0 and "needs AVATAR_SAFETY_CHECKER" in refused.stderr


@pytest.mark.django_db
def test_a_picture_the_check_passes_is_stored_as_it_was_and_a_flagged_one_blurred(packs, checkers, check):
    import torch

    picture = Image.open(FIXTURES / "portrait.jpg").convert("RGB").resize((512, 512))
    api = new_guest()
    check(safety.NoCheck())
    _, _, unchecked = store_picture(api, "cinematic", picture)
    check(safety.DiffusersSafetyCheck.from_folder(checkers["flags_none"], "cpu", torch.float32))
    _, _, passed = store_picture(api, "cinematic", picture)
    check(FlagsEverything())
    _, _, flagged = store_picture(api, "cinematic", picture)

    assert (unchecked.flagged, passed.flagged, flagged.flagged) == (False, False, True)
    assert (passed.flag_reason, flagged.flag_reason) == ("", "house_rules")
    as_is, passed_image = stored_image(unchecked.storage_key), stored_image(passed.storage_key)
    # The same pixels but for the watermark, which carries each output's own id.
    assert np.abs(np.asarray(as_is).astype(int) - np.asarray(passed_image).astype(int)).mean() < 4
    blurred = stored_image(flagged.storage_key)
    assert detail(blurred) < detail(as_is) / 5
    assert detail(stored_image(flagged.thumbnail_key)) < detail(stored_image(unchecked.thumbnail_key)) / 3
    # Still labelled as AI-made.
    assert metadata.read_provenance(blurred)["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE


# --- Through a real worker ----------------------------------------------------------------------


def run_one_job(env: dict, log_dir: Path, name: str, seed: int) -> tuple[WorkerProcess, Output, object]:
    """Start a worker with `env`, have it make one cinematic picture of the portrait for a new guest
    (who reads Hindi), stop it; the worker, the output and the guest's API client."""
    purge_queue()
    process = WorkerProcess(log_dir / f"{name}.log", env, name=name, beat=False)
    try:
        process.wait_ready(timeout=240)
        api = new_guest(language="hi")
        photo = api.upload_fixture("portrait.jpg").json()["id"]
        created = api.post("/jobs", {"photo": photo, "pack": "cinematic", "seed": seed})
        assert created.status_code == 202, created.content
        job, _ = wait_for_job(api, created.json()["id"], timeout=180)
        assert job["status"] == "succeeded", job
    finally:
        process.stop()
    return process, Output.objects.get(job_id=job["id"]), api


@pytest.mark.django_db(transaction=True)
def test_a_worker_with_the_checker_stores_an_unsafe_picture_blurred_and_flagged_and_its_share_is_refused(
        packs, checkers, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_SAFETY")}
    base["DATABASE_URL"] = database_url_for_tests()

    # No weights configured: the check is off, and the worker says so once, naming the setting.
    off, unchecked, _ = run_one_job(base, tmp_path, "safety-off", seed=5)
    warnings = [line for line in off.log_path.read_text().splitlines() if "content safety check is off" in line]
    assert len(warnings) == 1 and "AVATAR_SAFETY_CHECKER" in warnings[0]
    assert not unchecked.flagged

    # The operator's weights (here: a checker that flags everything), loaded beside the engine.
    on, flagged, owner = run_one_job({**base, "AVATAR_SAFETY_CHECKER": str(checkers["flags_all"])}, tmp_path,
                                     "safety-on", seed=5)
    log = on.log_path.read_text()
    assert "content safety check is off" not in log
    assert f"diffusers safety checker from {checkers['flags_all']} on cpu" in log
    assert "held back by the content safety check (nsfw)" in log
    assert flagged.flagged and flagged.flag_reason == "nsfw"
    # The same job, seed and pack: only the blur differs, and it leaves no detail.
    assert detail(stored_image(flagged.storage_key)) < detail(stored_image(unchecked.storage_key)) / 5

    refused = owner.post(f"/outputs/{flagged.id}/shares", {})
    assert refused.status_code == 400
    assert refused.json()["error"] == {"code": "output_flagged", "message": localised(REFUSAL, "hi")}
    assert not Share.objects.filter(output=flagged).exists()


# --- The site and the API -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_flagged_picture_cannot_be_shared_and_its_pages_say_why(packs, check):
    api = new_guest(language="hi")
    check(FlagsEverything())
    _, _, flagged = store_picture(api, "cinematic")
    check(safety.NoCheck())
    _, _, fine = store_picture(api, "cinematic")

    refused = api.post(f"/outputs/{flagged.id}/shares", {})
    assert refused.status_code == 400
    assert refused.json()["error"] == {"code": "output_flagged", "message": localised(REFUSAL, "hi")}
    assert api.post(f"/outputs/{fine.id}/shares", {}).status_code == 201

    site = Client(HTTP_ACCEPT_LANGUAGE="hi")
    site.force_login(User.objects.get(id=flagged.user_id))
    page = site.get(f"/results/{flagged.id}").content.decode()
    assert localised(NOTICE, "hi") in page and f"/results/{flagged.id}/share" not in page
    assert f"/results/{fine.id}/share" not in page  # (the other picture's page is its own)
    fine_page = site.get(f"/results/{fine.id}").content.decode()
    assert localised(NOTICE, "hi") not in fine_page and 'id="share"' in fine_page
    # The site's Share button is refused too, in the same words.
    assert site.post(f"/results/{flagged.id}/share").status_code == 400
    gallery = site.get("/gallery").content.decode()
    assert gallery.count("data-held-back") == 1
    assert not Share.objects.filter(output=flagged).exists()


# --- Moderation in the admin ----------------------------------------------------------------


def staff(email: str, moderator: bool) -> Client:
    user = User.objects.create_user(email=email, password="x" * 20, is_staff=True)
    if moderator:
        user.user_permissions.add(Permission.objects.get(codename="moderate_output", content_type__app_label="jobs"))
    client = Client()
    client.force_login(user)
    return client


def reported_share(api, reason: str = "offensive") -> tuple[Output, str]:
    """A picture shared by its owner and reported by a visitor of its public page."""
    _, _, output = store_picture(api, "cinematic")
    token = api.post(f"/outputs/{output.id}/shares", {}).json()["token"]
    assert Client().post(f"/s/{token}/report", {"reason": reason, "details": "please look"}).status_code == 302
    return output, token


def act(client: Client, url: str, action: str, ids: list) -> object:
    return client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]})


@pytest.mark.django_db
def test_the_moderation_queue_lists_flagged_and_reported_pictures_newest_first(packs, check):
    api = new_guest()
    check(FlagsEverything())
    _, _, flagged = store_picture(api, "cinematic")
    check(safety.NoCheck())
    reported, token = reported_share(api)
    _, _, ignored = store_picture(api, "cinematic")  # neither flagged nor reported: not in the queue

    moderator = staff("moderator@example.com", moderator=True)
    page = moderator.get(MODERATION)
    assert page.status_code == 200
    html = page.content.decode()
    assert str(reported.id) in html and str(flagged.id) in html and str(ignored.id) not in html
    assert html.index(str(reported.id)) < html.index(str(flagged.id)), "the newest report or flag first"
    assert "please look" in html and f"/s/{token}" in html
    only_flagged = moderator.get(MODERATION, {"flagged__exact": "1"}).content.decode()
    assert str(flagged.id) in only_flagged and str(reported.id) not in only_flagged
    only_reported = moderator.get(MODERATION, {"reported": "yes"}).content.decode()
    assert str(reported.id) in only_reported and str(flagged.id) not in only_reported
    found = moderator.get(MODERATION, {"q": token}).content.decode()
    assert str(reported.id) in found and str(flagged.id) not in found
    # Moderators see the pictures (the flagged one as stored: blurred).
    picture = moderator.get(f"{MODERATION}{flagged.id}/picture/thumbnail/")
    assert picture.status_code == 200 and "no-store" in picture["Cache-Control"]
    assert moderator.get(REPORTS).status_code == 200
    assert moderator.get("/admin/").content.decode().count(MODERATION) >= 1


@pytest.mark.django_db
def test_a_moderator_removes_a_picture_and_its_share_page_is_gone_at_once(packs, check):
    api = new_guest()
    check(FlagsEverything())
    _, _, flagged = store_picture(api, "cinematic")
    check(safety.NoCheck())
    reported, token = reported_share(api)
    visitor = Client()
    assert visitor.get(f"/s/{token}").status_code == 200
    assert visitor.get(f"/s/{token}/card.jpg").status_code == 200  # rendered, so there is a card to remove

    moderator = staff("moderator@example.com", moderator=True)
    done = act(moderator, MODERATION, "remove_selected", [flagged.id, reported.id])
    assert done.status_code == 302

    for path in (f"/s/{token}", f"/s/{token}/card.jpg", f"/s/{token}/image"):
        assert visitor.get(path).status_code in (404, 410), path
    assert not Output.objects.filter(id__in=[flagged.id, reported.id]).exists()
    for output in (flagged, reported):
        for key in (output.storage_key, output.thumbnail_key):
            assert not default_storage.exists(key), key
    assert not default_storage.exists(f"users/{reported.user_id}/cards/{reported.id}.jpg")
    assert list(Report.objects.values_list("resolved", flat=True)) == [True]
    assert api.get(f"/outputs/{reported.id}/image").status_code == 404
    assert moderator.get(MODERATION).content.decode().count("/picture/thumbnail/") == 0
    # The admin's log says who did it.
    from django.contrib.admin.models import DELETION, LogEntry

    assert LogEntry.objects.filter(action_flag=DELETION, user__email="moderator@example.com").count() == 2


@pytest.mark.django_db
def test_a_moderator_takes_down_a_reported_share_or_dismisses_a_report(packs):
    api = new_guest()
    taken, taken_token = reported_share(api, "offensive")
    kept, kept_token = reported_share(api, "other")
    visitor = Client()
    moderator = staff("moderator@example.com", moderator=True)

    take_down = Report.objects.get(share_token=taken_token)
    assert act(moderator, REPORTS, "take_down_reported_shares", [take_down.id]).status_code == 302
    assert visitor.get(f"/s/{taken_token}").status_code in (404, 410)
    assert api.get(f"/outputs/{taken.id}/image").status_code == 200, "the picture stays with its owner"
    take_down.refresh_from_db()
    assert take_down.resolved

    dismiss = Report.objects.get(share_token=kept_token)
    assert act(moderator, REPORTS, "dismiss_selected", [dismiss.id]).status_code == 302
    dismiss.refresh_from_db()
    assert dismiss.resolved and visitor.get(f"/s/{kept_token}").status_code == 200
    # Nothing left to look at: both leave the queue.
    queue = moderator.get(MODERATION).content.decode()
    assert str(taken.id) not in queue and str(kept.id) not in queue

    # A share link taken down from the share list, too.
    _, third = reported_share(api)
    assert act(moderator, "/admin/sharing/share/", "take_down_selected", [third]).status_code == 302
    assert visitor.get(f"/s/{third}").status_code in (404, 410)


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_moderate(packs, check):
    api = new_guest()
    check(FlagsEverything())
    _, _, flagged = store_picture(api, "cinematic")
    check(safety.NoCheck())
    reported, token = reported_share(api)
    report = Report.objects.get()

    outsider = staff("staff@example.com", moderator=False)
    assert outsider.get(MODERATION).status_code == 403
    assert outsider.get(f"{MODERATION}{flagged.id}/picture/image/").status_code == 404
    assert act(outsider, MODERATION, "remove_selected", [flagged.id, reported.id]).status_code == 403
    assert act(outsider, REPORTS, "take_down_reported_shares", [report.id]).status_code == 403
    assert MODERATION not in outsider.get("/admin/").content.decode()

    # Staff who may read reports (sharing.view_report) still cannot act on them.
    reader = User.objects.get(email="staff@example.com")
    reader.user_permissions.add(Permission.objects.get(codename="view_report"))
    assert outsider.get(REPORTS).status_code == 200
    act(outsider, REPORTS, "take_down_reported_shares", [report.id])
    act(outsider, REPORTS, "remove_reported_pictures", [report.id])
    assert Client().get(f"/s/{token}").status_code == 200
    assert Output.objects.filter(id__in=[flagged.id, reported.id]).count() == 2
    report.refresh_from_db()
    assert not report.resolved

    # The action layer checks too, whoever calls it.
    with pytest.raises(ActionError) as refused:
        do_remove_output(reader, flagged.id)
    assert refused.value.status == 403
    assert Output.objects.filter(id=flagged.id).exists()
    assert Job.objects.filter(id=flagged.job_id).exists()
