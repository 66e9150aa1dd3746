"""Sharing from a phone: the system share sheet gets the picture itself, and the WhatsApp link is right."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser import browser, phone, site  # noqa: F401

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


def picture_for_the_signed_in_guest() -> str:
    """A finished picture for the guest the browser just created, stored as the worker stores it."""
    from avatarapp.accounts.models import User
    from avatarapp.jobs.models import Job
    from avatarapp.packs.models import StylePack
    from tests.helpers import consenting_guest_with_photo
    from worker.outputs import store_output

    user, photo = consenting_guest_with_photo(User.objects.filter(is_guest=True).latest("date_joined"))
    job = Job.objects.create(user=user, photo=photo, pack=StylePack.objects.get(slug="avatar"), seed=1,
                             status=Job.Status.SUCCEEDED, progress=1.0)
    return str(store_output(job, 0, Image.new("RGB", (512, 512), (200, 120, 80))).id)


def test_share_hands_the_picture_file_to_the_phones_share_sheet(phone):
    device = phone("hi-IN")
    page = device.page
    page.add_init_script(SHARE_SHEET_STUB)
    page.goto("/consent?next=/gallery")
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/gallery$"))

    output_id = picture_for_the_signed_in_guest()
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
