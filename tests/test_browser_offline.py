"""When the connection drops, the service worker shows the offline page in the reader's language."""

from __future__ import annotations

import pytest
from django.utils import translation
from playwright.sync_api import expect

from tests.browser import browser, page_language, phone, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def install_service_worker(page) -> None:
    """Load the landing page and wait until its service worker controls it."""
    page.goto("/")
    page.wait_for_function("() => navigator.serviceWorker.ready.then(() => true)")
    if not page.evaluate("() => navigator.serviceWorker.controller !== null"):
        page.reload()  # clients.claim() normally makes this unnecessary
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    cached = page.evaluate("""async () => {
      const keys = await caches.keys();
      const requests = (await Promise.all(keys.map(async (k) => (await caches.open(k)).keys()))).flat();
      return requests.map((r) => new URL(r.url).pathname);
    }""")
    assert "/offline" in cached, f"the offline page is not in the cache: {cached}"


@pytest.mark.parametrize("locale", ["hi-IN", "ur-IN", "en-IN"])
def test_a_reader_who_loses_the_connection_sees_the_offline_page_in_their_language(phone, locale):
    lang = locale.split("-")[0]
    with translation.override(lang):
        title = translation.gettext("You are offline")
    device = phone(locale)
    page = device.page
    install_service_worker(page)

    device.context.set_offline(True)
    try:
        page.goto("/upload")
        assert page.url == device.base_url + "/upload", "the address stays; the service worker answers for it"
        expect(page.locator("h1")).to_have_text(title)
        assert page_language(page)[0] == lang
        expect(page).to_have_title(title)
        # The cached shell keeps the page styled.
        assert page.evaluate("getComputedStyle(document.querySelector('.top')).display") == "flex"
    finally:
        device.context.set_offline(False)

    page.goto("/")
    expect(page.locator(".hero")).to_be_visible()
