"""Sharing from a phone: the system share sheet gets the picture itself, and the WhatsApp link is right."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.browser import browser, phone, site  # noqa: F401
from tests.helpers import picture_for_the_latest_guest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Stands in for Android Chrome's share sheet: put into the page by the test, not by the app.
SHARE_SHEET_STUB = """
window.__shared = null;
navigator.canShare = (data) => !!(data && data.files && data.files.length);
navigator.share = async (data) => {
  window.__shared = {
    url: data.url || null,
    title: data.title || null,
    files: (data.files || []).map((f) => ({ name: f.name, type: f.type, size: f.size })),
  };
};
"""


def test_share_hands_the_picture_file_to_the_phones_share_sheet(phone):
    device = phone("hi-IN")
    page = device.page
    page.add_init_script(SHARE_SHEET_STUB)
    page.goto("/consent?next=/gallery")
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/gallery$"))

    output_id = picture_for_the_latest_guest()
    page.goto(f"/results/{output_id}")
    page.locator("form[action$='/share'] button").click()
    share_url = page.locator("#share-link").input_value()
    assert re.fullmatch(r"http://[a-z0-9.:]+/s/[A-Za-z0-9_-]{32}", share_url)  # SITE_URL + a 192-bit token

    page.locator("#share-button").click()
    page.wait_for_function("() => window.__shared !== null")
    shared = page.evaluate("() => window.__shared")
    assert shared["url"] == share_url
    [picture] = shared["files"]
    assert picture["type"] == "image/webp" and picture["size"] > 1_000

    whatsapp = page.locator("#share-whatsapp").get_attribute("href")
    assert whatsapp == "https://wa.me/?text=" + quote(share_url, safe="")
    device.assert_only_own_requests()
