"""A style pack's manifest (``pack.toml``), and the typed settings the generator reads from it.

A pack is a folder: ``pack.toml``, its LoRA ``.safetensors`` files (none for a
prompt-only pack) and a preview image. ``load_manifest`` reads and checks the
folder. What generation needs of a pack is a ``PackSpec``: it is stored as JSON
on the pack's row (``StylePack.manifest``) and read back with
``PackSpec.from_json``, so its defaults and the allowed sampler names live here
and nowhere else. This module imports neither torch nor Django, so both the web
process and the worker use it.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "pack.toml"
# "demo" is the built-in demo model's own family: its packs never meet a real model.
BASE_FAMILIES = ("demo", "sd15", "sdxl")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")

# The samplers a pack may name, and the diffusers class each name stands for (the
# worker looks the class up by this name). An empty name keeps the model's own sampler.
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "lcm": "LCMScheduler",
}
MODEL_SCHEDULER = ""
# A pack may ask for up to this many times the pictures, keeping the best (PackSpec.oversample).
MAX_OVERSAMPLE = 4

# Chhavi never lightens skin: a pack's positive prompt may not ask for fair, lighter or whiter
# skin (its negative prompt may name "lightened skin", to steer away from it). English is matched
# by SKIN_LIGHTENING_EN below; the site's other languages by these words. A "fair" word (said of
# people only) counts next to a word for skin, complexion or colour, in either order, up to two
# words apart; a "white" word (also said of saris and walls) only right before a word for skin or
# complexion. "alone" words mean skin lightening by themselves. Stems: inflected forms match too.
SKIN_LIGHTENING_WORDS: dict[str, tuple[str, ...]] = {
    "fair": ("गोरा", "गोरी", "गोरे",  # Hindi, Marathi
             "ফর্সা", "ফরসা", "ગોરી", "ગોરો", "ગોરા", "ਗੋਰੀ", "ਗੋਰਾ", "ਗੋਰੇ", "ଗୋରା", "ଗୋରି",
             "گورا", "گوری", "گورے"),
    "white": ("सफ़ेद", "पांढर", "সাদা", "తెల్ల", "வெள்ளை", "வெண்மை", "சிவப்பான", "சிவந்த",
              "ಬಿಳಿ", "ಬೆಳ್ಳ", "വെളുത്ത", "വെളുപ്പ", "വെളുക്ക", "સફેદ", "ਚਿੱਟ", "ଧଳା", "سفید"),
    "skin": ("त्वचा", "चमड़ी", "रंगत", "वर्ण", "कांती", "कांति", "ত্বক", "চামড়া", "చర్మ", "ఛాయ",
             "தோல", "சரும", "ಚರ್ಮ", "ತ್ವಚೆ", "ಮೈಬಣ್ಣ", "ചർമ", "ചര്മ", "തൊലി", "ત્વચા", "ચામડી", "રંગત",
             "ਚਮੜੀ", "ਤਵਚਾ", "ਰੰਗਤ", "ଚର୍ମ", "ଚମଡ଼ା", "ତ୍ୱଚା", "جلد", "چمڑی", "رنگت"),
    "colour": ("रंग", "রং", "রঙ", "રંગ", "ਰੰਗ", "ରଙ୍ଗ", "رنگ"),
    "alone": ("गोरापन", "गोरेपन", "गोरेपणा", "गोरीपान", "फेयरनेस", "சிவப்பழகு", "ગોરાપણું", "ਗੋਰਾਪਨ",
              "ਗੋਰੇਪਨ", "گوراپن", "گورا پن"),
}
SKIN_LIGHTENING_EN = re.compile(r"""
    \b(?:fair|fairer|fairest|pale|paler|porcelain|milky|whitened|lightened|bleached|brightened)
       (?:(?:\s*,\s*|\s+and\s+|[\s-]+)(?:smooth|flawless|glowing|radiant|clear|even|soft|silky|creamy|rosy
                                       |luminous|dewy|brown|toned)){0,2}
       [\s-]+(?:skin|complexion)\w*                       # fair skin, pale smooth skin, fair-skinned
  | \b(?:white|whiter|light|lighter|bright|brighter)      # said of lamps too: right before the skin word
       (?:[\s-]+(?:brown|glowing|radiant|smooth|flawless))?[\s-]+(?:skin|complexion)\w*
  | \b(?:skin|complexion)[\s-]+(?:whitening|lightening|bleaching|brightening|whitener|lightener)
  | \b(?:whiten|lighten|bleach|brighten)(?:s|ed|ing)?\s+(?:(?:the|her|his|their|your|my)\s+)?(?:skin|complexion)\w*
  | \b(?:skin|complexion)(?:[\s-]?tone)?\s+(?:fairer|lighter|whiter|paler)\b
  | \b(?:fair|glow)\s*(?:&|and|n)\s*(?:lovely|handsome)\b | \bfairness\b
  | \bgor[aie]\s+(?:twacha|rang|rangat|chamdi)\b | \bgorapan\b   # Hindi in Latin letters
""", re.IGNORECASE | re.VERBOSE)


class PackError(ValueError):
    """A pack that cannot be used, with a message that says what to fix."""


@dataclass(frozen=True)
class LoraFile:
    """One LoRA file inside the pack folder and the weight it is applied with."""

    file: str
    weight: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "weight": self.weight}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoraFile:
        return cls(file=str(data["file"]), weight=float(data.get("weight", cls.weight)))


@dataclass(frozen=True)
class FastMode:
    """The optional ``[fast]`` table: a few-step sampler (and speed LoRA) for quick previews.

    ``steps`` are the denoising steps a preview really runs; ``strength`` None means the
    pack's own strength.
    """

    scheduler: str = "lcm"
    steps: int = 4
    guidance: float = 1.0
    strength: float | None = None
    lora: LoraFile | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "scheduler": self.scheduler,
            "steps": self.steps,
            "guidance": self.guidance,
            "strength": self.strength,
            "lora": self.lora.to_json() if self.lora else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FastMode:
        strength, lora = data.get("strength"), data.get("lora")
        return cls(
            scheduler=str(data.get("scheduler", cls.scheduler)),
            steps=int(data.get("steps", cls.steps)),
            guidance=float(data.get("guidance", cls.guidance)),
            strength=float(strength) if strength is not None else None,
            lora=LoraFile.from_json(lora) if lora else None,
        )


@dataclass(frozen=True)
class PackSpec:
    """What a pack asks of the generator: prompts, LoRA files and recommended settings.

    Stored as JSON on ``StylePack.manifest`` (``to_json``) and loaded back in one place
    (``from_json``, through ``StylePack.spec``). A key missing from the stored JSON takes
    the default written here, so older rows keep working when a field is added.
    """

    prompt: str
    negative_prompt: str = ""
    loras: tuple[LoraFile, ...] = ()
    steps: int = 20
    guidance: float = 6.0
    strength: float = 0.6
    width: int = 512
    height: int = 512
    scheduler: str = MODEL_SCHEDULER
    preview: str = ""  # image file name inside the pack folder; "" for none
    fast: FastMode | None = None
    folder: str = ""  # the pack's folder name under AVATAR_PACKS_DIR; "" means the slug
    # How strongly the selfie's face steers each picture through the identity adapter (IP-Adapter,
    # setting AVATAR_IDENTITY_ADAPTER); 0 = not at all, and such a pack needs no adapter installed.
    identity_strength: float = 0.0
    # Make this many times the pictures asked for and keep the best by likeness to the selfie.
    oversample: int = 1

    def to_json(self) -> dict[str, Any]:
        # The likeness settings are written only when a pack uses them: a pack without them stores
        # the JSON it always did, and from_json reads their absence as the defaults.
        likeness = {key: value for key, value, default in (
            ("identity_strength", self.identity_strength, 0.0), ("oversample", self.oversample, 1)) if value != default}
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "loras": [lora.to_json() for lora in self.loras],
            "steps": self.steps,
            "guidance": self.guidance,
            "strength": self.strength,
            "width": self.width,
            "height": self.height,
            "scheduler": self.scheduler,
            "preview": self.preview,
            "fast": self.fast.to_json() if self.fast else None,
            "folder": self.folder,
            **likeness,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PackSpec:
        # A None value is treated as absent, so load_manifest can pass a TOML key it did not find.
        def get(key: str, default: Any) -> Any:
            value = data.get(key)
            return default if value is None else value

        fast = data.get("fast")
        return cls(
            prompt=str(data.get("prompt", "")),
            negative_prompt=str(get("negative_prompt", cls.negative_prompt)),
            loras=tuple(LoraFile.from_json(lora) for lora in get("loras", ())),
            steps=int(get("steps", cls.steps)),
            guidance=float(get("guidance", cls.guidance)),
            strength=float(get("strength", cls.strength)),
            width=int(get("width", cls.width)),
            height=int(get("height", cls.height)),
            scheduler=str(get("scheduler", cls.scheduler)),
            preview=str(get("preview", cls.preview)),
            fast=FastMode.from_json(fast) if fast is not None else None,
            folder=str(get("folder", cls.folder)),
            identity_strength=float(get("identity_strength", cls.identity_strength)),
            oversample=int(get("oversample", cls.oversample)),
        )


@dataclass(frozen=True)
class PackManifest:
    """A pack folder as read from disk: who the pack is (slug, names, family) and its PackSpec."""

    folder: Path
    slug: str
    version: str
    base_family: str
    names: dict[str, str]
    descriptions: dict[str, str]
    spec: PackSpec


def _require(data: Mapping[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in data:
        raise PackError(f"{where}: '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind):
        raise PackError(f"{where}: '{key}' must be a {kind.__name__}")
    return value


def _table(data: Mapping[str, Any], key: str, where: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise PackError(f"{where}: [{key}] must be a table")
    return value


def _numbers(table: Mapping[str, Any], kinds: dict[str, type], where: str, path: Path) -> dict[str, Any]:
    """The table's numeric entries that are present, checked: TOML gives int or float, never bool."""
    found = {}
    for key, kind in kinds.items():
        if key not in table:
            continue
        value = table[key]
        allowed = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise PackError(f"{path}: {where}.{key} must be {'a whole number' if kind is int else 'a number'}")
        found[key] = value
    return found


def _pack_file(name: str, folder: Path, what: str, path: Path) -> str:
    if "/" in name or "\\" in name or not name.endswith(".safetensors"):
        raise PackError(f"{path}: {what} '{name}' must be a .safetensors file inside the pack folder")
    if not (folder / name).is_file():
        raise PackError(f"{path}: {what} '{name}' not found")
    return name


# Letters that are the same however typed, after NFC (which splits ड़ into ड and a nukta): no nuktas
# (सफ़ेद is सफेद) or zero-width joiners, a non-joiner as a space (Urdu's), Urdu's yeh and kaf for Arabic's.
_SAME_LETTERS: dict[int, int | None] = {
    **dict.fromkeys((0x093C, 0x09BC, 0x0A3C, 0x0ABC, 0x0B3C, 0x200D)), 0x200C: 0x20, 0x064A: 0x06CC, 0x0643: 0x06A9,
}


def _same_letters(text: str) -> str:
    return unicodedata.normalize("NFC", text).translate(_SAME_LETTERS)


def _skin_lightening_indic() -> re.Pattern[str]:
    def any_of(*kinds: str) -> str:
        return "|".join(_same_letters(w) for kind in kinds for w in SKIN_LIGHTENING_WORDS[kind])

    letters = r"[^\s,.;:!?।॥|()\"'“”]*"  # the rest of a word
    gap = rf"(?:\s+{letters})"
    fair, white, skin, colour = any_of("fair"), any_of("white"), any_of("skin"), any_of("skin", "colour")
    return re.compile(
        rf"(?<!\w)(?:{fair}){letters}{gap}{{0,2}}\s+(?:{colour}){letters}"
        rf"|(?<!\w)(?:{colour}){letters}{gap}{{0,2}}\s+(?:{fair}){letters}"
        rf"|(?<!\w)(?:{white}){letters}{gap}?\s+(?:{skin}){letters}"
        rf"|(?<!\w)(?:{skin}){letters}\s+(?:{white}){letters}"
        rf"|(?:{any_of('alone')}){letters}"
    )


SKIN_LIGHTENING_INDIC = _skin_lightening_indic()


def skin_lightening_words(prompt: str) -> list[str]:
    """The words of a positive prompt that ask for lighter skin (SKIN_LIGHTENING_WORDS), in order."""
    text = _same_letters(prompt)
    found = [m.group(0) for pattern in (SKIN_LIGHTENING_EN, SKIN_LIGHTENING_INDIC) for m in pattern.finditer(text)]
    return list(dict.fromkeys(found))


def check_prompt(prompt: str, path: Path) -> None:
    """Refuse a prompt without the {subject} slot, or one that asks for lighter skin."""
    if "{subject}" not in prompt:
        raise PackError(f"{path}: prompt must contain the {{subject}} slot")
    words = skin_lightening_words(prompt)
    if words:
        raise PackError(f"{path}: prompt asks for lighter skin ({', '.join(repr(w) for w in words)}): Chhavi never "
                        "lightens skin or changes a person's skin tone. Describe light, clothes and setting "
                        "instead, with 'natural skin texture, true-to-life skin tone'")


def load_manifest(folder: Path) -> PackManifest:
    """Read and check a pack folder; PackError says what to fix."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise PackError(f"{folder}: no {MANIFEST_NAME} in this folder")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PackError(f"{path}: not valid TOML ({e})") from None

    slug = _require(data, "slug", str, path)
    if not SLUG_RE.match(slug):
        raise PackError(f"{path}: slug '{slug}' must be lower-case letters, digits and dashes")
    base_family = _require(data, "base_family", str, path)
    if base_family not in BASE_FAMILIES:
        raise PackError(f"{path}: base_family must be one of {', '.join(BASE_FAMILIES)}")
    names = _require(data, "names", dict, path)
    if "en" not in names:
        raise PackError(f"{path}: names must include English ('en')")
    prompt = _require(data, "prompt", str, path)
    check_prompt(prompt, path)

    loras = []
    for entry in data.get("lora", []):
        file = _pack_file(_require(entry, "file", str, path), folder, "LoRA file", path)
        loras.append({"file": file, **_numbers(entry, {"weight": float}, "lora", path)})

    # The TOML's layout mapped onto the stored JSON's; what it leaves out takes PackSpec's defaults.
    defaults = _table(data, "defaults", path)
    spec = PackSpec.from_json({
        "prompt": prompt,
        "negative_prompt": data.get("negative_prompt"),
        "loras": loras,
        **_numbers(defaults, {"steps": int, "guidance": float, "strength": float, "width": int, "height": int,
                              "identity_strength": float, "oversample": int}, "defaults", path),
        "scheduler": defaults.get("scheduler"),
        "preview": data.get("preview"),
        "fast": _fast_json(data, folder, path),
        "folder": folder.name,
    })
    check_spec(spec, folder, path)
    return PackManifest(
        folder=folder,
        slug=slug,
        version=str(_require(data, "version", str, path)),
        base_family=base_family,
        names={str(k): str(v) for k, v in names.items()},
        descriptions={str(k): str(v) for k, v in _table(data, "descriptions", path).items()},
        spec=spec,
    )


def _fast_json(data: Mapping[str, Any], folder: Path, path: Path) -> dict[str, Any] | None:
    """The TOML's [fast] table in the stored JSON's shape (its speed LoRA is `lora` plus `lora_weight`)."""
    if "fast" not in data:
        return None
    fast = _table(data, "fast", path)
    mode: dict[str, Any] = _numbers(fast, {"steps": int, "guidance": float, "strength": float}, "fast", path)
    if "scheduler" in fast:
        mode["scheduler"] = str(fast["scheduler"])
    if "lora" in fast:
        lora = {"file": _pack_file(str(fast["lora"]), folder, "fast.lora", path)}
        weight = _numbers(fast, {"lora_weight": float}, "fast", path)
        if weight:
            lora["weight"] = weight["lora_weight"]
        mode["lora"] = lora
    return mode


def _scheduler_names() -> str:
    return ", ".join(SCHEDULERS)


def check_spec(spec: PackSpec, folder: Path, path: Path) -> None:
    """Refuse settings the generator cannot run, naming the key to fix."""
    if not 1 <= spec.steps <= 150:
        raise PackError(f"{path}: defaults.steps must be between 1 and 150")
    if not 0.0 < spec.strength <= 1.0:
        raise PackError(f"{path}: defaults.strength must be above 0 and at most 1")
    if spec.scheduler != MODEL_SCHEDULER and spec.scheduler not in SCHEDULERS:
        raise PackError(f"{path}: defaults.scheduler must be one of {_scheduler_names()}")
    if not 0.0 <= spec.guidance <= 30.0:
        raise PackError(f"{path}: defaults.guidance must be between 0 and 30")
    for name, size in (("width", spec.width), ("height", spec.height)):
        if size % 8 or not 64 <= size <= 2048:
            raise PackError(f"{path}: defaults.{name} must be a multiple of 8 between 64 and 2048")
    if not 0.0 <= spec.identity_strength <= 1.0:
        raise PackError(f"{path}: defaults.identity_strength must be between 0 and 1 (0 = no identity adapter)")
    if not 1 <= spec.oversample <= MAX_OVERSAMPLE:
        raise PackError(f"{path}: defaults.oversample must be a whole number from 1 to {MAX_OVERSAMPLE}")
    if spec.preview and ("/" in spec.preview or "\\" in spec.preview or not (folder / spec.preview).is_file()):
        raise PackError(f"{path}: preview image '{spec.preview}' not found in the pack folder")
    if spec.fast is not None:
        if spec.fast.scheduler != MODEL_SCHEDULER and spec.fast.scheduler not in SCHEDULERS:
            raise PackError(f"{path}: fast.scheduler must be one of {_scheduler_names()}")
        if not 1 <= spec.fast.steps <= 12:
            raise PackError(f"{path}: fast.steps must be between 1 and 12")
        if spec.fast.strength is not None and not 0.0 < spec.fast.strength <= 1.0:
            raise PackError(f"{path}: fast.strength must be above 0 and at most 1")
        if not 0.0 <= spec.fast.guidance <= 30.0:
            raise PackError(f"{path}: fast.guidance must be between 0 and 30")
