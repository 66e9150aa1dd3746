"""Every language ships complete: no untranslated or fuzzy entry, compiled catalogues current."""

import gettext
import re
from pathlib import Path

import polib
import pytest
from django.conf import settings

from avatarapp.languages import NOTICE_ONLY_CODES, PRIVACY_SOURCES

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = [code for code, _ in settings.LANGUAGES if code != "en"]
NOTICE_ONLY = sorted(NOTICE_ONLY_CODES)
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")


def catalogue(lang: str) -> polib.POFile:
    return polib.pofile(str(ROOT / "locale" / lang / "LC_MESSAGES" / "django.po"))


def is_privacy_entry(entry: polib.POEntry) -> bool:
    return any(path in PRIVACY_SOURCES for path, _ in entry.occurrences)


@pytest.mark.parametrize("lang", NOTICE_ONLY)
def test_a_notice_only_catalogue_holds_the_whole_privacy_notice_and_nothing_else(lang):
    notice = {e.msgid for e in catalogue(lang)}
    site = {e.msgid for e in catalogue("hi") if is_privacy_entry(e)}
    assert len(site) > 30, "PRIVACY_SOURCES no longer matches the catalogues"
    assert notice == site, f"{lang}: run `make messages` (missing {sorted(site - notice)[:3]})"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_entry_is_translated_and_none_is_fuzzy(lang):
    po = catalogue(lang)
    untranslated = [e.msgid for e in po.untranslated_entries()]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    assert not untranslated, f"{lang}: untranslated {untranslated[:5]}"
    assert not fuzzy, f"{lang}: fuzzy {fuzzy[:5]}"
    assert "fuzzy" not in po.metadata_as_entry().flags


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_every_placeholder(lang):
    for entry in catalogue(lang).translated_entries():
        expected = sorted(PLACEHOLDER.findall(entry.msgid))
        translations = [entry.msgstr] if not entry.msgid_plural else list(entry.msgstr_plural.values())
        for text in translations:
            assert sorted(PLACEHOLDER.findall(text)) == expected, f"{lang}: {entry.msgid!r} -> {text!r}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalogue_matches_the_source(lang):
    mo_path = ROOT / "locale" / lang / "LC_MESSAGES" / "django.mo"
    with mo_path.open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    for entry in catalogue(lang).translated_entries():
        if not entry.msgid_plural:
            assert compiled.gettext(entry.msgid) == entry.msgstr, f"{lang}: run `make messages` ({entry.msgid!r})"


def test_every_template_string_is_in_the_catalogues():
    msgids = {e.msgid for e in catalogue("hi")}
    literal = re.compile(r"""{%\s*translate\s+(["'])(.+?)\1""")
    missing = []
    for template in (ROOT / "avatarapp" / "templates").rglob("*"):
        if template.is_file():
            for _, text in literal.findall(template.read_text(encoding="utf-8")):
                if text not in msgids:
                    missing.append(f"{template.name}: {text}")
    assert not missing, "run `make messages`: " + "; ".join(missing)
