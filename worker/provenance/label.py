"""The visible "AI-generated" label drawn on every output.

The label reads in the owner's language beside English (for example
"एआई से बना · AI-generated"), on a dark rounded pill so it stays legible on any
picture. Operators set whether it is drawn, its corner and its size
(AVATAR_LABEL, AVATAR_LABEL_POSITION, AVATAR_LABEL_SCALE).

Indic and Urdu text needs a font for its script and complex shaping (Pillow's
raqm layout). Fonts come from AVATAR_LABEL_FONT_DIR (Debian's fonts-noto-core
by default); where a script's font is missing, the label falls back to English
alone rather than drawing empty boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

ENGLISH = "AI-generated"
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")

# Noto font files per language's script.
SCRIPT_FONTS = {
    "hi": "NotoSansDevanagari-Regular.ttf", "mr": "NotoSansDevanagari-Regular.ttf",
    "bn": "NotoSansBengali-Regular.ttf", "as": "NotoSansBengali-Regular.ttf",
    "te": "NotoSansTelugu-Regular.ttf", "ta": "NotoSansTamil-Regular.ttf",
    "gu": "NotoSansGujarati-Regular.ttf", "kn": "NotoSansKannada-Regular.ttf",
    "ml": "NotoSansMalayalam-Regular.ttf", "pa": "NotoSansGurmukhi-Regular.ttf",
    "or": "NotoSansOriya-Regular.ttf", "ur": "NotoNastaliqUrdu-Regular.ttf",
}
RTL_LANGUAGES = {"ur"}
LATIN_FONTS = ("NotoSans-Regular.ttf", "DejaVuSans.ttf")


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size, layout_engine=layout)


def find_font(font_dirs: list[Path], name: str) -> str | None:
    for folder in font_dirs:
        for candidate in (folder / name, *folder.rglob(name)) if folder.is_dir() else ():
            if candidate.is_file():
                return str(candidate)
    return None


@dataclass
class LabelSpec:
    """What to draw: the label in the user's script (if we can), then English, each with its font."""

    native: str | None
    native_font: str | None
    latin_font: str | None
    rtl: bool = False


def script_runs(text: str) -> list[tuple[str, bool]]:
    """Split text into runs of Latin and non-Latin letters (script fonts often lack Latin glyphs)."""
    runs: list[tuple[str, bool]] = []
    for char in text:
        is_latin = ord(char) < 0x250 and not char.isspace()
        if runs and (char.isspace() or runs[-1][1] == is_latin):
            runs[-1] = (runs[-1][0] + char, runs[-1][1])
        else:
            runs.append((char, is_latin))
    return runs


def label_spec(language: str, translated: str, font_dirs: list[Path]) -> LabelSpec:
    latin = next((f for f in (find_font(font_dirs, n) for n in LATIN_FONTS) if f), None)
    if language == "en" or translated == ENGLISH or language not in SCRIPT_FONTS:
        return LabelSpec(None, None, latin)
    script_font = find_font(font_dirs, SCRIPT_FONTS[language])
    if script_font is None or not features.check("raqm"):
        return LabelSpec(None, None, latin)  # English alone beats empty boxes
    return LabelSpec(translated, script_font, latin, rtl=language in RTL_LANGUAGES)


def _load(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return _font(path, size) if path else ImageFont.load_default(size)


def draw_label(image: Image.Image, spec: LabelSpec, position: str = "bottom-right", scale: float = 0.04) -> Image.Image:
    if position not in POSITIONS:
        raise ValueError(f"label position must be one of {', '.join(POSITIONS)}")
    image = image.convert("RGB")
    size = max(12, round(image.height * scale))
    latin = _load(spec.latin_font, size)
    runs = [(ENGLISH, latin)]
    if spec.native:
        native = [(text, latin if is_latin else _load(spec.native_font, size))
                  for text, is_latin in script_runs(spec.native)]
        separator = [(" · ", latin)]
        # Right-to-left readers meet their own language first, on the right.
        runs = runs + separator + native if spec.rtl else native + separator + runs
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    boxes = [draw.textbbox((0, 0), text, font=font) for text, font in runs]
    pad = size // 2
    box_w = sum(b[2] - b[0] for b in boxes) + 2 * pad
    box_h = max(b[3] - b[1] for b in boxes) + pad
    margin = size // 2
    x = margin if position.endswith("left") else image.width - box_w - margin
    y = margin if position.startswith("top") else image.height - box_h - margin
    draw.rounded_rectangle([x, y, x + box_w, y + box_h], radius=box_h // 2, fill=(0, 0, 0, 150))
    cursor = x + pad
    for (text, font), (left, top, right, bottom) in zip(runs, boxes, strict=True):
        draw.text((cursor - left, y + (box_h - (bottom - top)) / 2 - top), text, font=font, fill=(255, 255, 255, 235))
        cursor += right - left
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
