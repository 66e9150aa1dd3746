"""Watermark: which invisible mark outlives sharing, at what cost, and how often noise passes for it.

    python -m bench --only watermark            # every attack, 100,000 unmarked reads
    python -m bench --only watermark --short    # one or two cases per family, fewer reads

Three schemes, each carrying a 32-bit short id: the DCT mark (id + 24-bit check),
RivaGAN (the trained network in the `invisible-watermark` package; id alone), and the
layered mark Chhavi embeds (both). Each marked picture goes through what sharing does
(ATTACKS, below) and is read back with the reader's undoings (avatarapp/provenance/reader.py);
a case survives when the exact id comes back. RivaGAN readings count only for an id the
server knows, as verify_image confirms them against the database.

Pictures: the natural fixtures at several sizes, and demo-like outputs (busy colour texture
over a colour cast, like the demo model's, drawn here so the suite needs no torch).
"""

from __future__ import annotations

import io
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from rich.progress import track

from avatarapp.provenance import reader, rivagan, watermark
from bench.figures import Figure
from worker.provenance.watermark_embed import embed, embed_dct, embed_rivagan

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SURVIVAL_BUDGET = 0.90
FALSE_POSITIVE_BUDGET = 1e-5
PSNR_BUDGET = 38.0
TIME_BUDGET_MS = 150.0

Attack = Callable[[Image.Image], Image.Image]


def jpeg(quality: int) -> Attack:
    def attack(image: Image.Image) -> Image.Image:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return Image.open(io.BytesIO(out.getvalue())).convert("RGB")
    return attack


def rescale(factor: float) -> Attack:
    def attack(image: Image.Image) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, Image.Resampling.BICUBIC if factor > 1 else Image.Resampling.LANCZOS)
    return attack


def crop(keep_area: float, where: str) -> Attack:
    """Keep `keep_area` of the picture: the centre, or cut from one edge (left, top) or two (corner)."""
    def attack(image: Image.Image) -> Image.Image:
        w, h = image.size
        if where == "centre":
            side = keep_area ** 0.5
            cw, ch = round(w * side), round(h * side)
            left, top = (w - cw) // 2, (h - ch) // 2
            return image.crop((left, top, left + cw, top + ch))
        if where == "left":
            return image.crop((round(w * (1 - keep_area)), 0, w, h))
        if where == "top":
            return image.crop((0, round(h * (1 - keep_area)), w, h))
        side = keep_area ** 0.5  # corner: the bottom-right part
        return image.crop((round(w * (1 - side)), round(h * (1 - side)), w, h))
    return attack


def rotate(degrees: float) -> Attack:
    def attack(image: Image.Image) -> Image.Image:
        return image.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
    return attack


def colour(kind: str, factor: float) -> Attack:
    enhancer = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
                "saturation": ImageEnhance.Color}[kind]

    def attack(image: Image.Image) -> Image.Image:
        return enhancer(image).enhance(factor)
    return attack


def screenshot(image: Image.Image) -> Image.Image:
    """What a phone screenshot of a shared picture does: shown larger, status and nav bars around, PNG->JPEG."""
    shown = image.resize((round(image.width * 1.35), round(image.height * 1.35)), Image.Resampling.BILINEAR)
    screen = Image.new("RGB", (shown.width + 40, shown.height + 220), (18, 18, 18))
    screen.paste(shown, (20, 110))
    return jpeg(80)(screen)


def mirror_then_jpeg(image: Image.Image) -> Image.Image:
    return jpeg(85)(ImageOps.mirror(image))


# family -> [(case, attack)]; --short keeps the first one or two of each family.
ATTACKS: dict[str, list[tuple[str, Attack]]] = {
    "jpeg": [(f"JPEG q{q}", jpeg(q)) for q in (50, 70, 90, 60, 80)],
    "rescale": [(f"rescale {f}x", rescale(f)) for f in (0.6, 0.4, 1.5, 0.75, 0.83, 1.17, 2.0)],
    "crop": [(f"crop {where} {round(a * 100)} %", crop(a, where))
             for a, where in ((0.88, "left"), (0.8, "centre"), (0.7, "corner"), (0.95, "top"), (0.9, "centre"),
                              (0.75, "left"))],
    "mirror": [("mirror", ImageOps.mirror), ("mirror + JPEG q85", mirror_then_jpeg)],
    "rotation": [(f"rotate {d:+g}°", rotate(d)) for d in (4.0, -2.0, 3.0, -4.0)],
    "colour": [("brightness 1.2", colour("brightness", 1.2)), ("contrast 1.25", colour("contrast", 1.25)),
               ("saturation 1.4", colour("saturation", 1.4)), ("brightness 0.85", colour("brightness", 0.85)),
               ("contrast 0.8", colour("contrast", 0.8)), ("saturation 0.6", colour("saturation", 0.6))],
    "screenshot": [("screenshot (upscale, bars, JPEG)", screenshot)],
}


def demo_like(seed: int, size: int) -> Image.Image:
    """A picture like the demo model's outputs: a colour cast under fine, busy colour texture (its random
    weights denoise to that), drawn with numpy so the suite needs no torch."""
    rng = np.random.default_rng(seed)
    cast = Image.fromarray(rng.uniform(80, 180, size=(3, 3, 3)).astype(np.uint8)).resize((size, size),
                                                                                         Image.Resampling.BICUBIC)
    texture = Image.fromarray(rng.uniform(0, 255, size=(size // 4, size // 4, 3)).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC)
    mixed = 0.6 * np.asarray(cast, dtype=np.float64) + 0.4 * np.asarray(texture, dtype=np.float64)
    return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8))


def pictures(short: bool) -> dict[str, list[tuple[str, Image.Image]]]:
    """Natural pictures (the fixtures, at several sizes) and demo-like outputs."""
    def fixture(name: str, long_side: int) -> Image.Image:
        image = Image.open(FIXTURES / name).convert("RGB")
        scale = long_side / max(image.size)
        return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)

    natural = [("portrait 512", fixture("portrait.jpg", 512)), ("two people 768", fixture("two_people.jpg", 768))]
    demo = [("demo 512", demo_like(1, 512))]
    if not short:
        natural += [("portrait 1024", fixture("portrait.jpg", 1024)),
                    ("other person 640", fixture("other_person.jpg", 640)),
                    ("wide selfie 1200", fixture("selfie_wide.jpg", 1200)),
                    ("no face 800", fixture("no_face.jpg", 800))]
        demo += [("demo 768", demo_like(2, 768)), ("demo 1024", demo_like(3, 1024))]
    return {"natural": natural, "demo": demo}


SCHEMES: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "DCT (today)": embed_dct, "RivaGAN": embed_rivagan, "layered (chosen)": embed,
}


def read_back(scheme: str, image: Image.Image, short_id: int) -> bool:
    """Whether the scheme's reader, with its undoings, returns exactly this id."""
    known = (lambda word: word == short_id)  # noqa: E731 - the server knows this output
    if scheme == "DCT (today)":
        return reader.find(image).short_id == short_id
    if scheme == "RivaGAN":
        return any(known(rivagan.read_word(image.convert("RGB"), side)) for _, side in reader.RIVAGAN_TRIES)
    return reader.find(image, known).short_id == short_id


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255 ** 2 / max(np.mean((x - y) ** 2), 1e-12)))


def survival(short: bool) -> tuple[dict, dict]:
    """Per scheme, kind of picture and family: [survived, cases]; and per scheme the PSNRs."""
    results: dict = defaultdict(lambda: [0, 0])
    psnrs: dict = defaultdict(list)
    attacks = [(family, case, attack) for family, cases in ATTACKS.items()
               for case, attack in (cases[:1] if short else cases)]
    rng = np.random.default_rng(14)
    # The short run compares today's mark with the chosen one; RivaGAN alone is the full run's.
    schemes = {k: v for k, v in SCHEMES.items() if not (short and k == "RivaGAN")}
    for kind, images in pictures(short).items():
        for label, image in images:
            for scheme, mark in schemes.items():
                short_id = int(rng.integers(0, 2 ** 32))
                marked = mark(image, short_id)
                psnrs[scheme].append(psnr(image, marked))
                for family, _case, attack in track(attacks, description=f"{scheme} on {label}", transient=True):
                    ok = read_back(scheme, attack(marked), short_id)
                    for key in ((scheme, kind, family), (scheme, kind, "all")):
                        results[key][0] += ok
                        results[key][1] += 1
    return results, psnrs


def unmarked_variants(count: int, seed: int) -> list[Image.Image]:
    """Unmarked pictures: random crops, scales, flips and colour changes of the fixtures, and demo-like fields."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(FIXTURES / name).convert("RGB") for name in
               ("portrait.jpg", "other_person.jpg", "two_people.jpg", "selfie_wide.jpg", "no_face.jpg")]
    out = []
    for i in range(count):
        if i % 5 == 4:
            out.append(demo_like(int(rng.integers(1 << 30)), 256))
            continue
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.3, 1.0)), int(h * rng.uniform(0.3, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        picture = src.crop((left, top, left + cw, top + ch)).resize((256, 256), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            picture = ImageOps.mirror(picture)
        out.append(ImageEnhance.Brightness(picture).enhance(float(rng.uniform(0.8, 1.2))))
    return out


def false_positives(single_reads: int, layered_reads: int, known_ids: int) -> tuple[int, int, int]:
    """(DCT single reads that passed the check, layered reads with undoings that found anything, reads)."""
    dct_hits = 0
    pool = unmarked_variants(min(single_reads, 5000), seed=1)
    for i in track(range(single_reads), description="unmarked pictures, DCT reads", transient=True):
        picture = pool[i % len(pool)]
        if i >= len(pool):  # reuse the pool with a fresh small shift each pass: a different picture to the reader
            shift = 1 + i // len(pool)
            picture = picture.crop((shift % 7, shift % 5, 256, 256))
        dct_hits += watermark.read(picture).found
    ids = set(np.random.default_rng(2).integers(0, 2 ** 32, size=known_ids).tolist())
    layered_hits = 0
    for picture in track(unmarked_variants(layered_reads, seed=3), description="unmarked pictures, layered reader",
                         transient=True):
        layered_hits += reader.find(picture, ids.__contains__).found
    return dct_hits, layered_hits, len(ids)


def false_positive_bound(outputs_on_server: int) -> float:
    """The chance that an unmarked picture is "found", whatever its pixels.

    Each DCT try (an undoing at a contrast gain) passes only if 24 check bits match the 32
    read (2^-24 per try, the vote agreement aside); each RivaGAN try only if its 32-bit word is one of the server's
    outputs (outputs / 2^32 per try, for a decoder whose words on unmarked pictures are
    spread evenly, which the measured reads support but cannot prove).
    """
    dct = len(reader.DCT_UNDOINGS) * len(watermark.GAINS) * 2.0 ** -watermark.CHECK_BITS
    riva = len(reader.RIVAGAN_TRIES) * outputs_on_server / 2.0 ** rivagan.BITS
    return dct + riva


def timing(repeats: int) -> tuple[float, float]:
    """Median ms to embed the layered mark in a 512x512 picture, and to read it back (first try)."""
    image = Image.open(FIXTURES / "portrait.jpg").convert("RGB").resize((512, 512))
    embed(image, 1)
    embed_ms, read_ms = [], []
    for i in range(repeats):
        started = time.perf_counter()
        marked = embed(image, i)
        embed_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        assert reader.find(marked).short_id == i
        read_ms.append((time.perf_counter() - started) * 1000)
    return statistics.median(embed_ms), statistics.median(read_ms)


CARD_ATTACKS: list[tuple[str, Attack]] = [
    ("as is", lambda image: image), ("JPEG q60", jpeg(60)), ("rescale 0.5x", rescale(0.5)),
    ("mirror", ImageOps.mirror), ("crop centre 80 %", crop(0.8, "centre")), ("screenshot", screenshot),
]


def card_reads(short: bool) -> dict[tuple[str, str], list[int]]:
    """Share cards (composed from the marked picture as the worker does) after what sharing does:
    per card variant and attack, [read back, cards]. The worker writes the first variant."""
    from avatarapp.sharing.cards import compose_card  # needs Django's apps, which `python -m bench` sets up

    variants: dict[str, Callable[[Image.Image, int], Image.Image]] = {
        "DCT over the card (chosen)": embed_dct, "both layers over the card": embed,
        "RivaGAN over the card, read by RivaGAN alone": embed_rivagan,
    }
    results: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    rng = np.random.default_rng(630)
    for _label, image in track(pictures(short)["natural"], description="share cards", transient=True):
        short_id = int(rng.integers(0, 2 ** 32))
        composed = compose_card(embed(image, short_id))
        for variant, mark in variants.items():
            card = mark(composed, short_id)
            for case, attack in CARD_ATTACKS:
                seen = attack(card).convert("RGB")
                if variant.endswith("RivaGAN alone"):
                    ok = any(rivagan.read_word(seen, side) == short_id for _, side in reader.RIVAGAN_TRIES)
                else:
                    ok = reader.find(seen, lambda word: word == short_id).short_id == short_id  # noqa: B023
                results[(variant, case)][0] += ok
                results[(variant, case)][1] += 1
    return results


def encoder_ms(repeats: int) -> tuple[float, float]:
    """Median ms of RivaGAN's encoder on a 256x256 frame: the package's ONNX through onnxruntime, and
    the same network through torch (worker/provenance/rivagan_encoder.py), which the worker uses."""
    from worker.provenance.rivagan_encoder import encoder

    frame = rivagan.to_frame(np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32))
    bits = rivagan.id_bits(1)[None]
    runs = {"onnxruntime": lambda: rivagan.session("encoder").run(None, {"frame": frame, "data": bits}),
            "torch": lambda: encoder()(frame, bits)}
    medians = []
    for run_once in runs.values():
        run_once()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run_once()
            times.append((time.perf_counter() - started) * 1000)
        medians.append(statistics.median(times))
    return medians[0], medians[1]


def output_marking_ms(repeats: int) -> float:
    """Median ms to mark everything one 512x512 output leaves with: the picture (both layers), its
    256 px thumbnail and its share card (the DCT layer each), as worker/outputs.py does."""
    from avatarapp.sharing.cards import compose_card

    image = Image.open(FIXTURES / "portrait.jpg").convert("RGB").resize((512, 512))
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        marked = embed(image, i)
        thumbnail = marked.copy()
        thumbnail.thumbnail((256, 256), Image.Resampling.LANCZOS)
        embed_dct(thumbnail, i)
        embed_dct(compose_card(marked), i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:])


def run(short: bool) -> list[Figure]:
    if not rivagan.available():
        reason = "RivaGAN's networks are not installed (invisible-watermark and onnxruntime: the worker extra)"
        return [Figure.not_measured("watermark survival", f">= {SURVIVAL_BUDGET:.0%}", reason)]
    results, psnrs = survival(short)
    figures = []
    measured = [scheme for scheme in SCHEMES if results[(scheme, "natural", "all")][1]]
    for scheme in measured:
        for kind in ("natural", "demo"):
            ok, total = results[(scheme, kind, "all")]
            chosen = scheme == "layered (chosen)" and kind == "natural"
            figures.append(Figure(f"{scheme}: survives sharing, {kind} pictures ({ok}/{total} cases)",
                                  100 * ok / total, "%", f">= {SURVIVAL_BUDGET:.0%}" if chosen else "",
                                  ok / total >= SURVIVAL_BUDGET if chosen else None))
        figures.append(Figure(f"{scheme}: PSNR, worst picture", min(psnrs[scheme]), "dB", f">= {PSNR_BUDGET:.0f} dB",
                              min(psnrs[scheme]) >= PSNR_BUDGET))
    for scheme in measured:
        for family in ATTACKS:
            ok, total = (a + b for a, b in zip(results[(scheme, "natural", family)],
                                               results[(scheme, "demo", family)], strict=True))
            figures.append(Figure(f"{scheme}: {family} ({ok}/{total})", 100 * ok / total, "%"))
    single, layered, known = (10_000, 20, 1000) if short else (100_000, 500, 1000)
    dct_hits, layered_hits, known = false_positives(single, layered, known)
    figures += [
        Figure(f"false positives, DCT layer, single reads ({dct_hits}/{single} unmarked)", dct_hits / single, "",
               f"<= {FALSE_POSITIVE_BUDGET:g}", dct_hits / single <= FALSE_POSITIVE_BUDGET),
        Figure(f"false positives, whole reader with its undoings and {known} known ids "
               f"({layered_hits}/{layered} unmarked)", layered_hits / layered, ""),
        Figure("false-positive bound per picture (10,000 outputs on the server)", false_positive_bound(10_000), "",
               f"<= {FALSE_POSITIVE_BUDGET:g}", false_positive_bound(10_000) <= FALSE_POSITIVE_BUDGET,
               ),
    ]
    for (variant, case), (ok, total) in card_reads(short).items():
        figures.append(Figure(f"share card, {variant}: {case} ({ok}/{total})", 100 * ok / total, "%"))
    onnx_ms, torch_ms = encoder_ms(3 if short else 10)
    embed_ms, read_ms = timing(3 if short else 10)
    figures += [
        Figure("RivaGAN encoder, 256x256, onnxruntime (the package's ONNX), median", onnx_ms, "ms"),
        Figure("RivaGAN encoder, 256x256, torch (what the worker runs), median", torch_ms, "ms"),
        Figure("marking one 512x512 output: picture, thumbnail and share card, median",
               output_marking_ms(3 if short else 10), "ms"),
        Figure("layered mark: embed, 512x512, median", embed_ms, "ms"),
        Figure("layered mark: read (found on the first try), 512x512, median", read_ms, "ms"),
        Figure("layered mark: embed + read, 512x512", embed_ms + read_ms, "ms", f"<= {TIME_BUDGET_MS:.0f} ms",
               embed_ms + read_ms <= TIME_BUDGET_MS),
    ]
    return figures
