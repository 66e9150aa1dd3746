"""Pages speak the reader's language: Urdu reads and lays out right to left, and the
language picked in the switcher stays for the pages that follow."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from avatarapp.languages import NOTICE_ONLY_CODES, RIGHT_TO_LEFT
from tests.browser import browser, check_page_fits_a_phone, page_language, phone, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def give_consent(page) -> None:
    page.goto("/consent?next=/upload")
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/upload$"))


def box(locator) -> dict:
    found = locator.bounding_box()
    assert found, f"{locator} is not on the page"
    return found


def content_edges(page) -> tuple[float, float]:
    """Left and right edges of <main>'s content box."""
    return tuple(page.evaluate("""() => {
      const main = document.querySelector("main"), r = main.getBoundingClientRect(), s = getComputedStyle(main);
      return [r.left + parseFloat(s.paddingLeft), r.right - parseFloat(s.paddingRight)];
    }"""))


def test_urdu_pages_are_marked_and_laid_out_right_to_left(phone):
    page = phone("ur-IN").page
    pages = ["/", "/consent", "/offline"]
    for path in pages:
        page.goto(path)
        assert page_language(page) == ("ur", "rtl"), f"{path}: {page_language(page)}"
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl", path
    give_consent(page)
    for path in ["/upload", "/gallery"]:
        page.goto(path)
        assert page_language(page) == ("ur", "rtl"), f"{path}: {page_language(page)}"
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl", path


def test_urdu_mirrors_the_english_layout(phone):
    """The primary button sits at the end of the line (right in English, left in Urdu); the brand
    and the consent boxes at its start; both at the same distance from the edge."""
    english, urdu = phone("en-IN").page, phone("ur-IN").page
    width = english.viewport_size["width"]
    for page in (english, urdu):
        page.goto("/")
    _, en_right = content_edges(english)
    ur_left, _ = content_edges(urdu)

    en_button, ur_button = (box(page.locator(".hero .button.primary")) for page in (english, urdu))
    assert en_button["x"] + en_button["width"] == pytest.approx(en_right, abs=1), \
        "English: the button ends at the right edge"
    assert ur_button["x"] == pytest.approx(ur_left, abs=1), "Urdu: the primary button sits on the left"
    assert ur_button["x"] + ur_button["width"] / 2 < width / 2 < en_button["x"] + en_button["width"] / 2
    assert ur_button["x"] == pytest.approx(width - (en_button["x"] + en_button["width"]), abs=1)

    en_brand, ur_brand = (box(page.locator(".brand")) for page in (english, urdu))
    assert en_brand["x"] + en_brand["width"] / 2 < width / 2 < ur_brand["x"] + ur_brand["width"] / 2
    en_select, ur_select = (box(page.locator("#lang-select")) for page in (english, urdu))
    assert ur_select["x"] + ur_select["width"] / 2 < width / 2 < en_select["x"] + en_select["width"] / 2

    for page in (english, urdu):
        page.goto("/consent")
    for name in ("adult", "agree"):
        en_check, ur_check = (box(page.locator(f"input[name={name}]")) for page in (english, urdu))
        assert en_check["x"] + en_check["width"] / 2 < width / 4, f"English: the {name} box is on the left"
        assert ur_check["x"] + ur_check["width"] / 2 > width * 3 / 4, f"Urdu: the {name} box is on the right"


def test_the_language_picked_in_the_switcher_stays_on_the_next_pages(phone):
    device = phone("en-IN")
    page = device.page
    html = page.locator("html")
    page.goto("/")
    expect(html).to_have_attribute("lang", "en")

    # Picking Hindi reloads the same page in Hindi (the script submits the switcher).
    page.locator("#lang-select").select_option("hi")
    expect(html).to_have_attribute("lang", "hi")
    assert page.url == device.base_url + "/"
    assert page.locator("#lang-select").input_value() == "hi"

    page.locator(".hero .button.primary").click()
    expect(page).to_have_url(re.compile(r"/consent"))
    expect(html).to_have_attribute("lang", "hi")

    # Then Urdu, on the consent page: it stays for the upload page after consent and for a fresh visit.
    page.locator("#lang-select").select_option("ur")
    expect(html).to_have_attribute("lang", "ur")
    expect(html).to_have_attribute("dir", "rtl")
    expect(page).to_have_url(re.compile(r"/consent\?next=/upload$"))
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/upload$"))
    assert page_language(page) == ("ur", "rtl")
    page.goto("/gallery")
    assert page_language(page) == ("ur", "rtl")
    cookies = {c["name"]: c["value"] for c in device.context.cookies()}
    assert cookies.get(settings.LANGUAGE_COOKIE_NAME) == "ur"


@pytest.mark.parametrize("code", [code for code, _ in settings.LANGUAGES])
def test_each_language_declares_itself_and_fits_a_small_phone(phone, code):
    """All 23 languages on the consent notice; a notice-only language sees the other pages in English."""
    page = phone(f"{code}-IN").page
    problems: list[str] = []
    own = (code, "rtl" if code in RIGHT_TO_LEFT else "ltr")
    for path in ["/", "/consent", "/offline"]:
        page.goto(path)
        expected = ("en", "ltr") if code in NOTICE_ONLY_CODES and path != "/consent" else own
        assert page_language(page) == expected, f"{path}: {page_language(page)}"
        check_page_fits_a_phone(page, problems)
    assert not problems, f"pages in {code} that are hard to use on a phone:\n" + "\n".join(problems)
