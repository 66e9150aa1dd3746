"""Keep only the privacy notice's strings in the catalogues of the notice-only languages.

`makemessages` writes every string of the site into each catalogue; for Bodo, Santali and the
other languages that speak only the privacy notice and its pages, everything else would sit
there untranslated. Run by `make messages` after makemessages, before compilemessages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatarapp.languages import NOTICE_ONLY_CODES, PRIVACY_SOURCES  # noqa: E402


def prune(path: Path) -> int:
    po = polib.pofile(str(path), wrapwidth=79)
    stray = [e for e in po if not any(source in PRIVACY_SOURCES for source, _ in e.occurrences)]
    for entry in stray:
        po.remove(entry)
    po.save()
    return len(stray)


def main() -> None:
    for code in sorted(NOTICE_ONLY_CODES):
        path = ROOT / "locale" / code / "LC_MESSAGES" / "django.po"
        if path.is_file():
            print(f"{code}: {prune(path)} entries outside the privacy notice removed")


if __name__ == "__main__":
    main()
