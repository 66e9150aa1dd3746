"""Run the benchmarks, print each figure beside its budget, write var/bench.json.

    python -m bench                       # everything: engine, service, pages, faces, watermark
    python -m bench --short               # the quick run CI can afford
    python -m bench --only engine,service
    python -m bench --only training        # style pack training: s/step, memory, FLOPs
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.figures import Figure  # noqa: E402

# Each suite is a module of this package with `run(short: bool) -> list[Figure]`;
# imported only when asked for (the engine suite imports torch, the pages suite Playwright).
SUITES = ("engine", "service", "pages", "faces", "watermark", "training")


def suite_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SUITES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SUITES)} (got {value!r})")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--only", type=suite_names, default=list(SUITES),
                        help=f"comma-separated suites: {', '.join(SUITES)} (default: all)")
    args = parser.parse_args()
    console = Console()
    figures: list[Figure] = []
    started = time.monotonic()
    for name in args.only:
        console.rule(f"[bold]{name}")
        figures += importlib.import_module(f"bench.{name}").run(short=args.short)
    table = Table(title=f"Chhavi benchmarks ({'short' if args.short else 'full'} run, "
                        f"{os.cpu_count()} cores, {time.monotonic() - started:.0f} s)")
    for column in ("figure", "value", "budget", "ok"):
        table.add_column(column)
    for f in figures:
        mark = "" if f.ok is None else ("[green]yes" if f.ok else "[red]NO")
        table.add_row(f.name, f.shown(), f.budget, mark)
    console.print(table)
    out = settings.VAR_DIR / "bench.json"
    out.write_text(json.dumps([f.as_json() for f in figures], indent=2, ensure_ascii=False))
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
