"""A reader on a phone makes a portrait from a selfie, in a real browser against a real worker.

landing → consent → upload (with preview) → style → live progress → result → gallery → share page,
in Hindi, Urdu and English; every page in the reader's language, comfortable to tap,
without sideways scrolling, and without a single request to another host.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.browser import FIXTURES, browser, check_page_fits_a_phone, page_language, phone, screenshot, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT = 90_000  # ms: a cold worker on 2 cores loads the model before the first picture

# Records the <progress> bar across the page's own reload: its server-rendered value at
# each load, then every value the page's script writes into it.
PROGRESS_RECORDER = """(() => {
  const KEY = "test-progress";
  const log = (entry) => {
    const all = JSON.parse(sessionStorage.getItem(KEY) || "[]");
    all.push(entry);
    sessionStorage.setItem(KEY, JSON.stringify(all));
  };
  document.addEventListener("DOMContentLoaded", () => {
    const bar = document.getElementById("job-progress");
    if (!bar) return;
    const load = performance.timeOrigin;
    log({load, source: "server", value: bar.value});
    new MutationObserver(() => log({load, source: "script", value: bar.value}))
      .observe(bar, {attributes: true, attributeFilter: ["value"]});
  });
})();"""


def expect_language(page, lang: str) -> None:
    expected = (lang, "rtl" if lang == "ur" else "ltr")
    assert page_language(page) == expected, f"{page.url}: <html lang, dir> is {page_language(page)}, not {expected}"


def image_loaded(locator) -> None:
    """The image is shown and its pixels arrived (not a broken or still-empty image)."""
    expect(locator).to_be_visible()
    try:
        locator.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=locator.element_handle())
    except PlaywrightError as e:
        raise AssertionError(f"{locator} did not load: {e.message.splitlines()[0]}") from None


def make_a_portrait(phone, worker, locale: str) -> None:
    lang = locale.split("-")[0]
    device = phone(locale)
    page = device.page
    page.add_init_script(PROGRESS_RECORDER)
    problems: list[str] = []

    def arrive(step: str) -> None:
        expect_language(page, lang)
        check_page_fits_a_phone(page, problems)
        screenshot(page, lang, step)

    # Landing: the one big button leads on; consent comes first for a new visitor.
    page.goto("/")
    arrive("landing")
    page.locator(".hero .button.primary").click()
    expect(page).to_have_url(re.compile(r"/consent\?next=/upload$"))
    arrive("consent")
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()

    # Upload: the chosen selfie shows as a preview before it is sent.
    expect(page).to_have_url(re.compile(r"/upload$"))
    page.locator("#image").set_input_files(FIXTURES / "portrait.jpg")
    image_loaded(page.locator("#preview-img"))
    arrive("upload")
    page.locator("#upload-form button[type=submit]").click()

    # Style: pick the avatar pack.
    expect(page).to_have_url(re.compile(r"/photos/[0-9a-f-]{36}/style$"))
    # The photo with the crop the portrait is made from, and the words that say so.
    expect(page.locator("svg.framing-photo")).to_be_visible()
    expect(page.locator(".framing-crop")).to_have_count(1)
    assert page.evaluate(
        "async () => (await fetch(document.querySelector('svg.framing-photo image').getAttribute('href'))).ok")
    page.locator("input[name=pack][value=avatar]").check()
    arrive("style")
    # Progress: the worker holds the job after its first step, so the page is seen with the bar
    # on its way; then the job goes on, and the page reloads itself with the result.
    with worker.hold_jobs():
        page.locator("main button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
        expect_language(page, lang)
        page.wait_for_function("() => document.getElementById('job-progress').value > 0", timeout=JOB_TIMEOUT)
        assert page.locator("#job-results img").count() == 0, "a picture showed while the job was held"
        assert page.locator("#cancel-form").count() == 1, "a running job can be cancelled from its page"
        screenshot(page, lang, "progress")
    thumbnail = page.locator("#job-results img")
    expect(thumbnail).to_be_visible(timeout=JOB_TIMEOUT)
    image_loaded(thumbnail)
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('test-progress') || '[]')")
    values = [entry["value"] for entry in seen]
    loads = list(dict.fromkeys(entry["load"] for entry in seen))
    live = [entry["value"] for entry in seen if entry["source"] == "script" and entry["load"] == loads[0]]
    assert len(loads) == 2, f"the page should reload itself once when the picture is ready: {seen}"
    assert values[0] < 100, f"the picture was ready before the progress page showed: {seen}"
    first_load = [entry["value"] for entry in seen if entry["load"] == loads[0]]
    assert any(0 < value < 100 for value in first_load), f"the page never showed the bar on its way: {seen}"
    assert values == sorted(values), f"the progress bar went backwards: {values}"
    assert live and live[-1] == 100, f"the page's script did not carry the bar to 100: {seen}"
    assert seen[-1] == {"load": loads[1], "source": "server", "value": 100}
    assert page.locator("#job-status").inner_text().strip()
    assert page.locator("#cancel-form").count() == 0
    arrive("progress-done")

    # Result: the full picture, labelled as AI-generated, with download and share.
    thumbnail.click()
    expect(page).to_have_url(re.compile(r"/results/[0-9a-f-]{36}$"))
    image_loaded(page.locator("figure.result img"))
    arrive("result")
    page.locator("form[action$='/share'] button").click()
    whatsapp = page.locator("#share-whatsapp")
    expect(whatsapp).to_be_visible()
    share_link = page.locator("#share-link")
    share_url = share_link.input_value()
    assert share_link.evaluate("input => getComputedStyle(input).direction") == "ltr", "a link reads left to right"
    assert share_url.startswith(device.base_url + "/s/")
    assert share_url.replace(":", "%3A").replace("/", "%2F") in whatsapp.get_attribute("href")
    arrive("result-shared")

    # Gallery: the new picture is there.
    page.locator('header nav a[href="/gallery"]').click()
    expect(page).to_have_url(re.compile(r"/gallery$"))
    pictures = page.locator(".grid img")
    expect(pictures).to_have_count(1)
    image_loaded(pictures.first)
    arrive("gallery")

    # Share page: what a friend opening the WhatsApp link sees.
    page.goto(share_url)
    image_loaded(page.locator("figure.result img"))
    arrive("share")

    assert not problems, "pages that are hard to use on a phone:\n" + "\n".join(problems)
    device.assert_only_own_requests()


def test_a_hindi_reader_makes_a_portrait_from_a_selfie(phone, worker):
    make_a_portrait(phone, worker, "hi-IN")


def test_an_urdu_reader_makes_a_portrait_from_a_selfie(phone, worker):
    make_a_portrait(phone, worker, "ur-IN")


def test_an_english_reader_makes_a_portrait_from_a_selfie(phone, worker):
    make_a_portrait(phone, worker, "en-IN")
