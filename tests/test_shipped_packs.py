"""The style packs shipped for real models (packs/sd15, packs/sdxl), and the no-skin-lightening rule."""

import json
import shutil
from pathlib import Path

import pytest

from avatarapp.languages import SITE_LANGUAGES
from avatarapp.packs.manifest import PackError, load_manifest, skin_lightening_words

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {"sd15": "-sd15", "sdxl": "-xl"}
THEMES = {"cinematic", "avatar", "bollywood", "festive", "wedding", "illustrated", "headshot"}
FOLDERS = sorted(folder for family in SUFFIXES for folder in (ROOT / "packs" / family).iterdir() if folder.is_dir())


def theme(slug: str) -> str:
    return slug.rsplit("-", 1)[0]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_a_shipped_pack_loads_and_speaks_every_site_language(folder: Path) -> None:
    manifest = load_manifest(folder)
    family = folder.parent.name
    assert manifest.base_family == family
    assert manifest.slug == folder.name and manifest.slug.endswith(SUFFIXES[family])
    assert manifest.version == "1.0.0"
    # Prompt-only: no LoRA file, no speed LoRA for a [fast] preview, and the worker renders the preview.
    assert (manifest.spec.loras, manifest.spec.fast, manifest.spec.preview) == ((), None, "")
    assert manifest.spec.prompt.count("{subject}") == 1
    assert "true-to-life skin tone" in manifest.spec.prompt
    assert "lightened skin" in manifest.spec.negative_prompt
    for texts in (manifest.names, manifest.descriptions):
        assert set(texts) == {code for code, _ in SITE_LANGUAGES}
        for code, text in texts.items():
            assert text.strip() == text and text, (code, text)
            assert "{" not in text and "}" not in text, (code, text)
    assert all(len(name.split()) <= 3 for name in manifest.names.values())


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_a_shipped_pack_has_settings_that_suit_its_family(folder: Path) -> None:
    spec = load_manifest(folder).spec
    assert spec.scheduler == "dpm"
    if folder.parent.name == "sd15":
        assert (spec.width, spec.height) == (512, 512)
        assert spec.steps == 25 and 6.5 <= spec.guidance <= 8.0 and 0.55 <= spec.strength <= 0.65
    else:
        # SDXL's own sizes: about a megapixel (1024x1024, 896x1152, 832x1216).
        assert 0.9 <= spec.width * spec.height / 1024**2 <= 1.1
        assert spec.steps == 30 and 5.0 <= spec.guidance <= 7.0 and 0.5 <= spec.strength <= 0.6


def test_every_theme_ships_for_both_families_under_the_same_name() -> None:
    by_family = {family: {theme(f.name): load_manifest(f) for f in FOLDERS if f.parent.name == family}
                 for family in SUFFIXES}
    assert set(by_family["sd15"]) == set(by_family["sdxl"]) == THEMES
    for name in THEMES:
        assert by_family["sd15"][name].names == by_family["sdxl"][name].names


@pytest.fixture
def pack_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "retro-sd15"
    shutil.copytree(ROOT / "packs" / "sd15" / "cinematic-sd15", folder)
    return folder


def set_prompts(folder: Path, prompt: str, negative_prompt: str = "blurry") -> None:
    manifest = folder / "pack.toml"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    lines = [f"prompt = {json.dumps(prompt, ensure_ascii=False)}" if line.startswith("prompt =")
             else f"negative_prompt = {json.dumps(negative_prompt, ensure_ascii=False)}"
             if line.startswith("negative_prompt =") else line for line in lines]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("prompt, words", [
    ("portrait of {subject}, fair skin", "'fair skin'"),
    ("{subject} with lighter skin tone", "'lighter skin'"),
    ("{subject}, skin whitening", "'skin whitening'"),
    ("गोरी त्वचा वाली {subject}", "'गोरी त्वचा'"),
    ("{subject}, light-skinned", "'light-skinned'"),
])
def test_a_prompt_that_asks_for_lighter_skin_is_refused(pack_copy: Path, prompt: str, words: str) -> None:
    set_prompts(pack_copy, prompt)
    with pytest.raises(PackError, match=f"prompt asks for lighter skin \\({words}\\): Chhavi never lightens skin"):
        load_manifest(pack_copy)


@pytest.mark.parametrize("prompt", [
    "{subject} in soft light",
    "festival lights behind {subject}",
    "studio lighting, {subject}",
    "{subject}, natural skin tone",
    "{subject}, warm fairy lights, plain white background, natural skin texture",
])
def test_light_that_is_not_about_skin_passes(pack_copy: Path, prompt: str) -> None:
    set_prompts(pack_copy, prompt)
    assert load_manifest(pack_copy).spec.prompt == prompt


def test_a_negative_prompt_may_name_lightened_skin(pack_copy: Path) -> None:
    set_prompts(pack_copy, "{subject}, soft light", negative_prompt="lightened skin, skin whitening, fair skin")
    assert load_manifest(pack_copy).spec.negative_prompt.startswith("lightened skin")


@pytest.mark.parametrize("prompt", [
    "fair, glowing skin", "pale smooth complexion", "light brown skin", "whiten her skin", "skin tone lighter",
    "Fair & Lovely", "fairness", "गोरा रंग", "त्वचा को गोरा करें", "सफ़ेद त्वचा", "ফর্সা গায়ের রং", "সাদা ত্বক",
    "తెల్లని చర్మం", "சிவப்பழகு", "வெள்ளைத் தோல்", "ગોરી ત્વચા", "ಬಿಳಿ ಚರ್ಮ", "വെളുത്ത ചർമ്മം", "ਗੋਰੀ ਚਮੜੀ",
    "ଗୋରା ରଙ୍ଗ", "گوری رنگت", "سفید جلد",
])
def test_skin_lightening_is_found_in_english_and_the_site_languages(prompt: str) -> None:
    assert skin_lightening_words(prompt)


@pytest.mark.parametrize("prompt", [
    "soft light, smooth skin", "rim light and natural skin texture", "pale blue saree, natural skin",
    "moonlight on the skin", "glowing diyas, bright colours", "सफ़ेद रंग की साड़ी", "प्राकृतिक त्वचा और सफ़ेद पृष्ठभूमि",
    "வெள்ளை புடவை", "true-to-life skin tone, even skin tone",
])
def test_white_and_light_said_of_other_things_are_not_skin_lightening(prompt: str) -> None:
    assert skin_lightening_words(prompt) == []
