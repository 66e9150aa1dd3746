"""The privacy notice speaks every language of the Eighth Schedule; the rest of the site, twelve."""

import re

import pytest
from django.test import Client

from avatarapp.languages import ALL_LANGUAGES, NOTICE_ONLY_CODES, RIGHT_TO_LEFT, SITE_LANGUAGES

pytestmark = pytest.mark.django_db

ENGLISH_NOTICE_START = "I am 18 or older."


def test_there_are_twenty_two_scheduled_languages_besides_english():
    assert len(ALL_LANGUAGES) == 23 and len({code for code, _ in ALL_LANGUAGES}) == 23


@pytest.mark.parametrize("code", [code for code, _ in ALL_LANGUAGES])
def test_the_consent_page_renders_in_each_language_with_the_right_direction(code):
    page = Client(headers={"Accept-Language": code}).get("/consent").content.decode()
    direction = "rtl" if code in RIGHT_TO_LEFT else "ltr"
    assert f'<html lang="{code}" dir="{direction}">' in page
    if code != "en":
        assert ENGLISH_NOTICE_START not in page, f"{code}: the notice is still in English"
    # Every language can be chosen from this page, each named in its own script.
    options = re.findall(r'<option value="([\w-]+)" lang=', page)
    assert options == [c for c, _ in ALL_LANGUAGES]


@pytest.mark.parametrize("code", sorted(NOTICE_ONLY_CODES))
def test_other_pages_fall_back_to_english_whole_for_a_notice_only_language(code):
    page = Client(headers={"Accept-Language": code}).get("/").content.decode()
    assert '<html lang="en" dir="ltr">' in page
    options = re.findall(r'<option value="([\w-]+)" lang=', page)
    assert options == [c for c, _ in SITE_LANGUAGES]


def test_the_api_consent_text_speaks_a_notice_only_language():
    english = Client().get("/api/v1/consent").json()["text"]
    santali = Client(headers={"Accept-Language": "sat"}).get("/api/v1/consent").json()["text"]
    assert santali != english
