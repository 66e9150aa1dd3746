"""The zero-shot identity adapter (IP-Adapter with a CLIP image encoder, setting AVATAR_IDENTITY_ADAPTER).

A tiny, randomly initialised adapter and image encoder are built here (tests/identity_adapter_helpers.py)
for the demo model; nothing is downloaded. With the adapter, the selfie's face steers each picture; at
strength 0 the pictures are those of a worker without it; packs asking for it are refused at install on a
site that has none; a folder that is incomplete, for another family or built on InsightFace is refused by
the worker with a message that says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from PIL import Image

from avatarapp.packs.manifest import PackError, PackSpec, load_manifest
from avatarapp.packs.models import StylePack
from avatarapp.packs.registry import sync_packs
from tests.engine_helpers import demo_engine, load_demo_packs
from tests.helpers import FIXTURES
from tests.identity_adapter_helpers import build_faceid_adapter, build_identity_adapter
from worker.engine import Engine, EngineError, GenerationRequest

DEMO_MODEL = Path(settings.AVATAR_BASE_MODEL)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return build_identity_adapter(tmp_path_factory.mktemp("identity") / "tiny-ip-adapter", DEMO_MODEL)


@pytest.fixture(scope="module")
def plain() -> Engine:
    return demo_engine()


@pytest.fixture(scope="module")
def with_adapter(adapter) -> Engine:
    return demo_engine(identity_adapter=str(adapter))


def portrait() -> Image.Image:
    return Image.open(FIXTURES / "portrait.jpg").convert("RGB")


def other_face() -> Image.Image:
    """A second reference: the portrait turned upside down and its colours inverted."""
    return Image.eval(portrait().rotate(180), lambda value: 255 - value)


def pictures(engine: Engine, strength: float, faces: list[Image.Image] | None, pack: str | None = None,
             seeds: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """Two 64x64 pictures as diffusers' floats (guidance > 1: both halves of the batch carry the adapter)."""
    engine.switch_pack(pack)
    request = GenerationRequest(images=[portrait()] * len(seeds), prompt="portrait of a person, cinematic",
                                negative_prompt="blurry", seeds=list(seeds), steps=2, guidance=5.0, strength=1.0,
                                width=64, height=64, identity_images=faces, identity_strength=strength)
    return engine.generate_array(request)


# --- The engine ------------------------------------------------------------------------------------


def test_the_face_steers_the_pictures_and_strength_zero_leaves_them_as_without_the_adapter(plain, with_adapter):
    faces = [portrait(), portrait()]
    without = pictures(plain, 0.0, None)
    # Loaded but not wanted (strength 0, or no face): the very pictures of an engine without it.
    assert np.abs(pictures(with_adapter, 0.0, faces) - without).max() < 1e-5
    assert np.abs(pictures(with_adapter, 0.7, None) - without).max() < 1e-5
    # Wanted: the pictures change, more with more strength, and with the face given.
    steered = pictures(with_adapter, 0.7, faces)
    assert np.abs(steered - without).mean() > 0.01
    assert np.abs(pictures(with_adapter, 0.2, faces) - without).mean() < np.abs(steered - without).mean()
    assert np.abs(pictures(with_adapter, 0.7, [other_face(), other_face()]) - steered).mean() > 0.005
    # One reference per picture: each picture of a batch follows its own face, as it would alone.
    [alone] = pictures(with_adapter, 0.7, [other_face()], seeds=(4,))
    mixed = pictures(with_adapter, 0.7, [portrait(), other_face()])
    assert np.abs(mixed[0] - steered[0]).max() < 1e-4 and np.abs(mixed[1] - alone).max() < 1e-4
    # And a later run without the face is back to the plain pictures: the strength is per request.
    assert np.abs(pictures(with_adapter, 0.0, faces) - without).max() < 1e-5


def test_a_plain_ip_adapter_takes_the_encoders_projected_embedding(plain, tmp_path):
    engine = demo_engine(identity_adapter=str(build_identity_adapter(tmp_path / "plain", DEMO_MODEL, plus=False)))
    assert engine.identity is not None and engine.identity.kind == "plain"
    without = pictures(plain, 0.0, None)
    assert np.abs(pictures(engine, 0.0, [portrait(), portrait()]) - without).max() < 1e-5
    assert np.abs(pictures(engine, 0.8, [portrait(), portrait()]) - without).mean() > 0.005


def test_a_request_with_one_face_for_two_pictures_is_refused(with_adapter):
    with pytest.raises(ValueError, match="one identity image per seed"):
        pictures(with_adapter, 0.5, [portrait()])
    with pytest.raises(ValueError, match="identity strength"):
        pictures(with_adapter, 1.5, [portrait(), portrait()])


@pytest.mark.parametrize("mode, options", [("active", {}), ("fused", {}), ("hotswap", {"max_lora_rank": 8})])
def test_every_lora_mode_keeps_working_with_the_adapter_loaded(adapter, plain, mode, options):
    reference = demo_engine(lora_mode=mode, **options)
    load_demo_packs(reference, speed_lora=None)
    engine = demo_engine(lora_mode=mode, identity_adapter=str(adapter), **options)
    load_demo_packs(engine, speed_lora=None)
    faces = [portrait(), portrait()]
    for pack in ("avatar", "cinematic", None, "avatar"):
        expected = pictures(reference, 0.0, None, pack)
        assert np.abs(pictures(engine, 0.0, faces, pack) - expected).max() < 1e-4, (mode, pack)
        assert np.abs(pictures(engine, 0.7, faces, pack) - expected).mean() > 0.01, (mode, pack)
    # The pack still matters with the face: two packs, the same face, two pictures.
    assert np.abs(pictures(engine, 0.7, faces, "avatar") - pictures(engine, 0.7, faces, "cinematic")).mean() > 0.01


def test_compile_mode_and_the_adapter_are_refused_together_at_load(adapter):
    with pytest.raises(EngineError, match="AVATAR_IDENTITY_ADAPTER cannot be combined with AVATAR_COMPILE"):
        demo_engine(compile_unet=True, identity_adapter=str(adapter))


def test_an_adapter_for_another_family_is_refused_naming_both(tmp_path):
    sd15 = build_identity_adapter(tmp_path / "sd15-adapter", DEMO_MODEL, cross_width=768)
    with pytest.raises(EngineError, match=r"made for sd15, but the base model is demo \(cross-attention width 64\)"):
        demo_engine(identity_adapter=str(sd15))
    sdxl = build_identity_adapter(tmp_path / "sdxl-adapter", DEMO_MODEL, cross_width=2048)
    with pytest.raises(EngineError, match="made for sdxl, but the base model is demo"):
        demo_engine(identity_adapter=str(sdxl))


def test_an_incomplete_or_pickled_folder_is_refused_naming_what_is_missing(adapter, tmp_path):
    with pytest.raises(EngineError, match="AVATAR_IDENTITY_ADAPTER=.*nowhere is neither a folder nor a model"):
        demo_engine(identity_adapter=str(tmp_path / "nowhere"))
    no_encoder = build_identity_adapter(tmp_path / "no-encoder", DEMO_MODEL, with_encoder=False)
    with pytest.raises(EngineError, match="incomplete, image_encoder/config.json, image_encoder/model.safetensors "
                                          "missing"):
        demo_engine(identity_adapter=str(no_encoder))
    pickled = tmp_path / "pickled"
    shutil.copytree(adapter, pickled)
    (pickled / "ip_adapter.safetensors").rename(pickled / "ip_adapter.bin")
    with pytest.raises(EngineError, match="only ip_adapter.safetensors is accepted"):
        demo_engine(identity_adapter=str(pickled))
    garbled = tmp_path / "garbled"
    shutil.copytree(adapter, garbled)
    (garbled / "ip_adapter.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EngineError, match="cannot read .*ip_adapter.safetensors as .safetensors"):
        demo_engine(identity_adapter=str(garbled))


def test_an_adapter_whose_encoder_does_not_fit_is_refused(adapter, tmp_path):
    mismatched = tmp_path / "mismatched"
    shutil.copytree(adapter, mismatched)
    config = mismatched / "image_encoder" / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 32', '"hidden_size": 48'))
    with pytest.raises(EngineError, match="takes image features of width 32, but its image encoder"):
        demo_engine(identity_adapter=str(mismatched))


def test_an_insightface_faceid_adapter_is_refused_as_non_commercial(tmp_path):
    faceid = build_faceid_adapter(tmp_path / "faceid")
    with pytest.raises(EngineError, match="FaceID adapter, built on InsightFace .* non-commercial"):
        demo_engine(identity_adapter=str(faceid))


def test_an_adapter_installed_under_the_models_folder_is_found_by_its_name(adapter, tmp_path):
    shutil.copytree(adapter, tmp_path / "ip-adapter-plus-face-demo")
    with override_settings(AVATAR_MODELS_DIR=tmp_path):
        engine = demo_engine(identity_adapter="ip-adapter-plus-face-demo")
    assert engine.identity is not None and engine.identity.folder == tmp_path / "ip-adapter-plus-face-demo"


# --- Packs -----------------------------------------------------------------------------------------


@pytest.fixture
def likeness_pack(tmp_path) -> Path:
    """A copy of the demo `avatar` pack, renamed, that asks for the identity adapter."""
    folder = tmp_path / "source" / "likeness"
    shutil.copytree(Path(settings.AVATAR_PACKS_DIR) / "avatar", folder)
    set_defaults(folder, slug="likeness", identity_strength="0.6")
    return folder


def set_defaults(folder: Path, slug: str | None = None, **defaults: str) -> None:
    manifest = folder / "pack.toml"
    text = manifest.read_text()
    if slug:
        text = text.replace('slug = "avatar"', f'slug = "{slug}"')
    lines = "".join(f"{key} = {value}\n" for key, value in defaults.items())
    manifest.write_text(text.replace("[defaults]\n", f"[defaults]\n{lines}", 1))


@pytest.mark.django_db
def test_a_pack_asking_for_the_adapter_is_refused_at_install_without_one(likeness_pack, tmp_path, adapter):
    installed = tmp_path / "installed"
    with override_settings(AVATAR_PACKS_DIR=installed, AVATAR_IDENTITY_ADAPTER=""):
        with pytest.raises(CommandError, match=r"pack likeness asks for identity_strength = 0\.6, which needs the "
                                               r"identity adapter, but AVATAR_IDENTITY_ADAPTER is not set\. Install "
                                               r"one \(`python manage\.py fetch_model ip-adapter-plus-face-sd15`\)"):
            call_command("install_pack", str(likeness_pack), base_family="demo")
        assert not (installed / "likeness").exists()
        # A folder put there by hand is not registered either, and says why.
        shutil.copytree(likeness_pack, installed / "likeness")
        registered, problems = sync_packs()
        assert "likeness" not in registered
        assert any("AVATAR_IDENTITY_ADAPTER is not set" in problem for problem in problems)
        assert not StylePack.objects.filter(slug="likeness", enabled=True).exists()
    # A setting naming nothing usable is no better.
    with override_settings(AVATAR_PACKS_DIR=installed, AVATAR_IDENTITY_ADAPTER=str(tmp_path / "nowhere")):
        assert any("is neither a folder nor a model" in problem for problem in sync_packs()[1])
    # With the adapter installed, the same pack goes in.
    with override_settings(AVATAR_PACKS_DIR=installed, AVATAR_IDENTITY_ADAPTER=str(adapter)):
        call_command("install_pack", str(likeness_pack), base_family="demo", replace=True)
        pack = StylePack.objects.get(slug="likeness")
        assert pack.enabled and pack.spec.identity_strength == 0.6


@pytest.mark.parametrize("key, value, message", [
    ("identity_strength", "-0.1", "defaults.identity_strength must be between 0 and 1"),
    ("identity_strength", "1.5", "defaults.identity_strength must be between 0 and 1"),
    ("identity_strength", '"strong"', "defaults.identity_strength must be a number"),
    ("oversample", "0", "defaults.oversample must be a whole number from 1 to 4"),
    ("oversample", "5", "defaults.oversample must be a whole number from 1 to 4"),
    ("oversample", "2.5", "defaults.oversample must be a whole number"),
    ("oversample", "true", "defaults.oversample must be a whole number"),
])
def test_identity_strength_and_oversample_out_of_range_are_refused(likeness_pack, key, value, message):
    manifest = likeness_pack / "pack.toml"
    manifest.write_text(manifest.read_text().replace("identity_strength = 0.6\n", ""))  # a key appears once
    set_defaults(likeness_pack, **{key: value})
    with pytest.raises(PackError, match=message):
        load_manifest(likeness_pack)


def test_identity_strength_and_oversample_are_read_stored_and_default_for_older_rows(likeness_pack):
    set_defaults(likeness_pack, oversample="2")
    spec = load_manifest(likeness_pack).spec
    assert (spec.identity_strength, spec.oversample) == (0.6, 2)
    assert PackSpec.from_json(spec.to_json()) == spec
    # A row stored before these keys existed reads as a pack without them.
    older = {k: v for k, v in spec.to_json().items() if k not in ("identity_strength", "oversample")}
    assert (PackSpec.from_json(older).identity_strength, PackSpec.from_json(older).oversample) == (0.0, 1)
    # And a pack that uses neither stores the JSON it always did.
    assert not {"identity_strength", "oversample"} & set(PackSpec(prompt="{subject}").to_json())
    # The shipped and demo packs ask for neither.
    assert (load_manifest(Path(settings.AVATAR_PACKS_DIR) / "avatar").spec.identity_strength,
            load_manifest(Path(settings.AVATAR_PACKS_DIR) / "avatar").spec.oversample) == (0.0, 1)


# --- Through a real worker -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_job_through_a_worker_with_the_adapter_differs_from_the_same_job_without_it(adapter, tmp_path):
    """One worker, the adapter loaded: the same job (photo, seed, prompt, LoRA) through a pack that asks
    for the face and through its twin at strength 0, which the engine test shows is the run without it."""
    from avatarapp.jobs.models import Output
    from tests.conftest import WorkerProcess, database_url_for_tests
    from tests.helpers import new_guest, purge_queue, wait_for_job

    packs_dir = tmp_path / "packs"
    for slug, strength in (("likeness", "0.8"), ("no-likeness", "0.0")):
        shutil.copytree(Path(settings.AVATAR_PACKS_DIR) / "avatar", packs_dir / slug)
        set_defaults(packs_dir / slug, slug=slug, identity_strength=strength)
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "AVATAR_PACKS_DIR": str(packs_dir),
           "AVATAR_IDENTITY_ADAPTER": str(adapter)}
    with override_settings(AVATAR_PACKS_DIR=packs_dir, AVATAR_IDENTITY_ADAPTER=str(adapter)):
        assert set(sync_packs()[0]) == {"likeness", "no-likeness"}
        purge_queue()
        worker = WorkerProcess(tmp_path / "worker.log", env, name="identity", beat=False)
        try:
            worker.wait_ready(timeout=240)
            api = new_guest()
            photo = api.upload_fixture("portrait.jpg").json()["id"]
            outputs = {}
            for slug in ("likeness", "no-likeness"):
                created = api.post("/jobs", {"photo": photo, "pack": slug, "seed": 11})
                assert created.status_code == 202, created.content
                job, _ = wait_for_job(api, created.json()["id"], timeout=180)
                assert job["status"] == "succeeded", (job, worker.log_path.read_text()[-4000:])
                outputs[slug] = Output.objects.filter(job_id=job["id"]).order_by("index").first()
        finally:
            worker.stop()
    assert "loaded the identity adapter" in worker.log_path.read_text()
    steered, plain = (stored_pixels(outputs[slug].storage_key) for slug in ("likeness", "no-likeness"))
    assert steered.shape == plain.shape
    assert np.abs(steered - plain).mean() > 2  # of 255: the face changed the picture, not a rounding


def stored_pixels(key: str) -> np.ndarray:
    from django.core.files.storage import default_storage

    with default_storage.open(key) as f:
        return np.asarray(Image.open(f).convert("RGB")).astype(int)


def test_the_shipped_vit_h_encoder_config_is_the_architecture_of_the_catalogue_weights():
    """Chhavi writes the ViT-H-14 encoder's config itself: its parameters, in fp32, are the catalogue file's
    2,528,373,448 bytes less the safetensors header."""
    from accelerate import init_empty_weights
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from avatarapp.modelstore.identity import VIT_H_CONFIG

    with init_empty_weights():
        model = CLIPVisionModelWithProjection(CLIPVisionConfig.from_pretrained(VIT_H_CONFIG.parent))
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == 632_076_800  # h94's model card: 632.08M
    assert 0 < 2_528_373_448 - 4 * parameters < 100_000
