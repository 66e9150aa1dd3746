"""Run every benchmark, print each figure beside its budget, write var/bench.json.

    python -m worker.bench           # full run
    python -m worker.bench --short   # the quick run CI can afford
    python -m worker.bench --only engine,service
"""

from __future__ import annotations

import argparse
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

from worker.bench.figures import Figure  # noqa: E402

SUITES = ("engine", "service")


def run_suite(name: str, short: bool) -> list[Figure]:
    if name == "engine":
        from worker.bench import engine_bench as suite
    else:
        from worker.bench import service_bench as suite
    return suite.run(short=short)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="smaller sizes and fewer repeats")
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites: engine, service")
    args = parser.parse_args()
    console = Console()
    figures: list[Figure] = []
    started = time.monotonic()
    for name in args.only.split(","):
        console.rule(f"[bold]{name}")
        figures += run_suite(name.strip(), args.short)
    table = Table(title=f"Chhavi benchmarks ({'short' if args.short else 'full'} run, "
                        f"{os.cpu_count()} cores, {time.monotonic() - started:.0f} s)")
    for column in ("figure", "value", "budget", "ok"):
        table.add_column(column)
    for f in figures:
        mark = "" if f.ok is None else ("[green]yes" if f.ok else "[red]NO")
        table.add_row(f.name, f"{f.value:.4g} {f.unit}", f.budget, mark)
    console.print(table)
    out = settings.VAR_DIR / "bench.json"
    out.write_text(json.dumps([f.as_json() for f in figures], indent=2))
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
