"""Style packs: manifests are validated with clear messages; operators install and list packs."""

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from avatarapp.packs.manifest import FastMode, LoraFile, PackError, PackSpec, load_manifest
from avatarapp.packs.models import StylePack
from tests.helpers import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def pack_copy(tmp_path):
    folder = tmp_path / "retro"
    shutil.copytree(Path(settings.AVATAR_PACKS_DIR) / "avatar", folder)
    manifest = folder / "pack.toml"
    manifest.write_text(manifest.read_text().replace('slug = "avatar"', 'slug = "retro"'))
    return folder


def edit(folder: Path, old: str, new: str) -> None:
    manifest = folder / "pack.toml"
    manifest.write_text(manifest.read_text().replace(old, new))


def test_the_demo_packs_are_valid_and_localised():
    for slug in ("cinematic", "avatar"):
        manifest = load_manifest(Path(settings.AVATAR_PACKS_DIR) / slug)
        assert manifest.base_family == "demo"
        assert {"en", "hi", "ur", "ta"} <= set(manifest.names)
        assert "{subject}" in manifest.spec.prompt
        assert manifest.spec.loras == (LoraFile(f"{slug}.safetensors", 1.0),)
        assert manifest.spec.fast == FastMode(scheduler="lcm", steps=4, guidance=1.0, strength=None,
                                              lora=LoraFile("speed.safetensors", 1.0))
        assert manifest.spec.folder == slug


@pytest.mark.parametrize("old, new, message", [
    ('slug = "retro"', 'slug = "Retro Pack!"', "slug"),
    ('base_family = "demo"', 'base_family = "sd3"', "base_family"),
    ("{subject}, ", "", "{subject}"),
    ('file = "avatar.safetensors"', 'file = "missing.safetensors"', "not found"),
    ('file = "avatar.safetensors"', 'file = "../evil.safetensors"', "inside the pack folder"),
    ("steps = 8", "steps = 0", "steps"),
    ("strength = 0.6", "strength = 1.5", "strength"),
    ("width = 512", "width = 500", "multiple of 8"),
    ('scheduler = "lcm"', 'scheduler = "magic"', "fast.scheduler must be one of ddim, dpm, euler, euler_a, lcm"),
    ("steps = 8", 'steps = "eight"', "defaults.steps must be a whole number"),
    ("guidance = 5.0", "guidance = true", "defaults.guidance must be a number"),
    ('lora = "speed.safetensors"', 'lora = "nope.safetensors"', "fast.lora 'nope.safetensors' not found"),
    ("steps = 4", "steps = 40", "fast.steps must be between 1 and 12"),
])
def test_a_broken_manifest_is_refused_with_a_message_that_says_what_to_fix(pack_copy, old, new, message):
    edit(pack_copy, old, new)
    with pytest.raises(PackError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        load_manifest(pack_copy)


def test_install_pack_copies_registers_and_lists_a_pack(pack_copy, packs, settings, tmp_path):
    settings.AVATAR_PACKS_DIR = tmp_path / "installed"
    call_command("install_pack", str(pack_copy))
    assert (settings.AVATAR_PACKS_DIR / "retro" / "pack.toml").is_file()
    assert StylePack.objects.get(slug="retro").enabled
    assert "retro" in [p["slug"] for p in Api().get("/packs").json()["packs"]]
    with pytest.raises(CommandError, match="already installed"):
        call_command("install_pack", str(pack_copy))
    call_command("install_pack", str(pack_copy), "--replace")


def test_only_packs_a_warm_worker_can_run_are_offered_and_accepted(packs):
    from avatarapp.ops.models import WorkerStatus
    from tests.helpers import new_guest

    api = new_guest()
    photo = api.upload_fixture().json()
    assert {p["slug"] for p in api.get("/packs").json()["packs"]} == {"avatar", "cinematic"}
    # The demo worker goes; an SD1.5 worker comes: the demo packs are no longer offered.
    WorkerStatus.objects.update(family="sd15")
    assert not {p["slug"] for p in api.get("/packs").json()["packs"]} & {"avatar", "cinematic"}
    refused = api.post("/jobs", {"photo": photo["id"], "pack": "avatar"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "pack_unavailable"
    assert "/packs/avatar/preview" not in api.client.get("/").content.decode()


def test_install_pack_refuses_a_pack_for_another_base_family(pack_copy, settings, tmp_path):
    settings.AVATAR_PACKS_DIR = tmp_path / "installed"
    edit(pack_copy, 'base_family = "demo"', 'base_family = "sdxl"')
    with pytest.raises(CommandError, match="made for sdxl"):
        call_command("install_pack", str(pack_copy), base_family="demo")
    assert not (settings.AVATAR_PACKS_DIR / "retro").exists()


def test_the_packs_api_speaks_the_users_language(packs):
    english = {p["slug"]: p for p in Api(language="en").get("/packs").json()["packs"]}
    hindi = {p["slug"]: p for p in Api(language="hi").get("/packs").json()["packs"]}
    assert english["cinematic"]["name"] == "Cinematic"
    assert hindi["cinematic"]["name"] == "सिनेमाई"
    assert hindi["avatar"]["description"] != english["avatar"]["description"]
    assert english["avatar"]["fast_preview"] is True
    preview = Api().client.get(english["avatar"]["preview_url"])
    assert preview.status_code == 200 and preview["Content-Type"] == "image/webp"


def test_a_removed_pack_folder_disables_its_pack(pack_copy, settings, tmp_path):
    settings.AVATAR_PACKS_DIR = tmp_path / "installed"
    call_command("install_pack", str(pack_copy))
    shutil.rmtree(settings.AVATAR_PACKS_DIR / "retro")
    call_command("list_packs")
    assert not StylePack.objects.get(slug="retro").enabled


def test_a_stored_spec_loads_back_into_the_same_spec():
    spec = load_manifest(Path(settings.AVATAR_PACKS_DIR) / "avatar").spec
    assert PackSpec.from_json(spec.to_json()) == spec


def test_a_row_stored_before_the_spec_was_typed_still_loads():
    stored = {
        "prompt": "{subject}, oil painting", "negative_prompt": "blurry",
        "loras": [{"file": "oil.safetensors", "weight": 0.8}], "steps": 30, "guidance": 7.5, "strength": 0.55,
        "width": 768, "height": 512, "scheduler": "dpm", "preview": "preview.webp",
        "fast": {"scheduler": "lcm", "steps": 4, "guidance": 1.0, "strength": None,
                 "lora": {"file": "speed.safetensors", "weight": 1.0}},
        "folder": "oil-v2",
    }
    spec = PackSpec.from_json(stored)
    assert spec == PackSpec(prompt="{subject}, oil painting", negative_prompt="blurry",
                            loras=(LoraFile("oil.safetensors", 0.8),), steps=30, guidance=7.5, strength=0.55,
                            width=768, height=512, scheduler="dpm", preview="preview.webp",
                            fast=FastMode("lcm", 4, 1.0, None, LoraFile("speed.safetensors", 1.0)), folder="oil-v2")
    assert spec.to_json() == stored


def test_keys_missing_from_a_stored_spec_take_the_defaults():
    spec = PackSpec.from_json({"prompt": "{subject}", "fast": {}})
    assert (spec.steps, spec.guidance, spec.strength, spec.width, spec.height) == (20, 6.0, 0.6, 512, 512)
    assert (spec.scheduler, spec.preview, spec.loras, spec.folder) == ("", "", (), "")
    assert spec.fast == FastMode(scheduler="lcm", steps=4, guidance=1.0, strength=None, lora=None)
    assert PackSpec.from_json({"prompt": "{subject}", "fast": None}).fast is None


def test_a_registered_pack_carries_its_manifest_spec(packs):
    pack = StylePack.objects.get(slug="avatar")
    assert pack.spec == load_manifest(Path(settings.AVATAR_PACKS_DIR) / "avatar").spec
    assert pack.spec is pack.spec  # loaded once per instance
    pack.manifest = {**pack.manifest, "fast": None}
    assert pack.spec.fast is None  # and again when the JSON is replaced
