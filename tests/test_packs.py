"""Style packs: manifests are validated with clear messages; operators install and list packs."""

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from avatarapp.packs.manifest import PackError, load_manifest
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
        assert manifest.base_family == "sd15"
        assert {"en", "hi", "ur", "ta"} <= set(manifest.names)
        assert "{subject}" in manifest.prompt
        assert manifest.fast and manifest.fast["scheduler"] == "lcm" and manifest.fast["steps"] == 4


@pytest.mark.parametrize("old, new, message", [
    ('slug = "retro"', 'slug = "Retro Pack!"', "slug"),
    ('base_family = "sd15"', 'base_family = "sd3"', "base_family"),
    ("{subject}, ", "", "{subject}"),
    ('file = "avatar.safetensors"', 'file = "missing.safetensors"', "not found"),
    ('file = "avatar.safetensors"', 'file = "../evil.safetensors"', "inside the pack folder"),
    ("steps = 8", "steps = 0", "steps"),
    ("strength = 0.6", "strength = 1.5", "strength"),
    ("width = 512", "width = 500", "multiple of 8"),
    ('scheduler = "lcm"', 'scheduler = "magic"', "scheduler"),
])
def test_a_broken_manifest_is_refused_with_a_message_that_says_what_to_fix(pack_copy, old, new, message):
    edit(pack_copy, old, new)
    with pytest.raises(PackError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        load_manifest(pack_copy)


def test_install_pack_copies_registers_and_lists_a_pack(pack_copy, settings, tmp_path):
    settings.AVATAR_PACKS_DIR = tmp_path / "installed"
    call_command("install_pack", str(pack_copy))
    assert (settings.AVATAR_PACKS_DIR / "retro" / "pack.toml").is_file()
    assert StylePack.objects.get(slug="retro").enabled
    assert "retro" in [p["slug"] for p in Api().get("/packs").json()["packs"]]
    with pytest.raises(CommandError, match="already installed"):
        call_command("install_pack", str(pack_copy))
    call_command("install_pack", str(pack_copy), "--replace")


def test_install_pack_refuses_a_pack_for_another_base_family(pack_copy, settings, tmp_path):
    settings.AVATAR_PACKS_DIR = tmp_path / "installed"
    edit(pack_copy, 'base_family = "sd15"', 'base_family = "sdxl"')
    with pytest.raises(CommandError, match="made for sdxl"):
        call_command("install_pack", str(pack_copy))
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
