"""Shared pieces of the browser tests: Debian's chromium through Playwright, dressed as a phone.

Import the fixtures into a test module (``from tests.browser import browser, phone, site  # noqa: F401``).
``phone(locale)`` opens a fresh Pixel 7-class context against pytest-django's live
server, records every request its pages (and service worker) make, and at the end
checks that none left for another host: the site must not call third parties. It also
records every Content-Security-Policy violation (the ``securitypolicyviolation`` event
of each document, and chromium's "Refused to ..." console errors), and at the end checks
there was none: the pages run under the site's real policy, which allows nothing inline.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.phone import CHROMIUM, CHROMIUM_ARGS, PHONE
from tests.helpers import third_party_urls

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
FIXTURES = Path(__file__).parent / "fixtures"

SMALL_PHONE = {"width": 360, "height": 640}
MIN_TARGET = 48  # px, the smallest comfortable touch target

# What counts as a touch target: buttons, links, selects, submit inputs, and
# anything styled as a button (the file picker's label) or opening a disclosure.
TOUCH_TARGETS_JS = """(minimum) => {
  const selector = "button, a[href], select, input[type=submit], .button, summary";
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || style.visibility === "hidden") continue;
    if (el.closest("details:not([open])") && el.tagName !== "SUMMARY") continue;
    // Off-canvas until focused (the skip link): not something a finger can reach.
    if (r.right <= 0 || r.left >= document.documentElement.scrollWidth) continue;
    if (r.height < minimum) {
      const label = (el.innerText || el.value || el.getAttribute("aria-label")
                     || el.querySelector("img")?.alt || el.outerHTML).trim().slice(0, 40);
      const size = `${r.width.toFixed(0)}x${r.height.toFixed(1)} px`;
      out.push(`<${el.tagName.toLowerCase()}> "${label}" is ${size}`);
    }
  }
  return out;
}"""


# Put into every document before its own scripts run (init scripts are not subject to the
# page's CSP): each violation goes to the test through an exposed binding, which outlives
# navigations, and into window.__cspViolations for a test that wants to look in the page.
CSP_RECORDER = """(() => {
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const violation = {page: location.href, directive: e.effectiveDirective, blocked: e.blockedURI,
                       source: e.sourceFile, line: e.lineNumber, sample: e.sample, disposition: e.disposition};
    window.__cspViolations.push(violation);
    if (window.__recordCspViolation) window.__recordCspViolation(violation);
  }, true);
})();"""


@pytest.fixture(scope="module")
def browser():
    """One chromium per test module (each module imports this fixture, so a session-wide
    one would be started once per module anyway, and two Playwrights cannot share a thread)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (Debian's chromium, no browser download)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in the test thread, which makes
    # Django refuse ORM calls there (database fixtures' setup and teardown included).
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def site(live_server, transactional_db, packs, settings):
    """The live server's base URL, with the demo packs registered.

    Static files are served straight from static/ under their plain names: the
    live server's static handler does not know the hashed names of the
    production manifest, and this way the tests always see the current CSS/JS.
    """
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.SITE_URL = live_server.url
    return live_server.url


class Phone:
    """One browser context (a fresh phone: no cookies, no cache) and its request log."""

    def __init__(self, browser, base_url: str, locale: str, **options):
        self.base_url = base_url
        self.context = browser.new_context(**{**PHONE, "locale": locale, "base_url": base_url, **options})
        self.context.set_default_timeout(15_000)
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.csp_violations: list[str] = []
        self.context.expose_binding("__recordCspViolation", self._record_csp_violation)
        self.context.add_init_script(CSP_RECORDER)
        self.context.on("console", self._record_csp_console_message)
        self.page = self.context.new_page()

    def _record_csp_violation(self, source, violation: dict) -> None:
        where = urlsplit(violation.get("page") or "").path
        blocked = violation.get("blocked") or "inline"
        origin = f"{violation.get('source') or 'the page'}:{violation.get('line')}"
        sample = violation.get("sample") or ""
        directive = violation.get("directive")
        self.csp_violations.append(f"{where}: {directive} blocked {blocked} ({origin}) {sample}".rstrip())

    def _record_csp_console_message(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(f"console: {message.text}")

    def third_party_requests(self) -> list[str]:
        return third_party_urls(self.requests, self.base_url)

    def assert_only_own_requests(self) -> None:
        assert self.requests, "no request was recorded at all"
        offenders = self.third_party_requests()
        assert not offenders, "requests to other hosts:\n" + "\n".join(offenders)

    def assert_no_csp_violations(self) -> None:
        # A round trip to each open page first: bindings it called are delivered before the answer.
        from playwright.sync_api import Error as PlaywrightError

        for page in self.context.pages:
            try:
                page.evaluate("() => true")
            except PlaywrightError:
                pass  # closed or crashed: nothing more to hear from it
        violations = list(dict.fromkeys(self.csp_violations))
        assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(browser, site):
    """``phone("hi-IN")`` opens a fresh phone context reading in that locale."""
    opened: list[Phone] = []

    def open_phone(locale: str = "en-IN", **options) -> Phone:
        opened.append(Phone(browser, site, locale, **options))
        return opened[-1]

    yield open_phone
    try:
        for each in opened:
            each.assert_only_own_requests()
            each.assert_no_csp_violations()
    finally:
        for each in opened:
            each.close()


def screenshot(page, lang: str, step: str) -> Path:
    """test-artifacts/screenshots/<lang>-<step>.png, one CSS pixel per pixel (412 px wide)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{lang}-{step}.png"
    page.screenshot(path=str(path), scale="css", animations="disabled", caret="hide")
    return path


def page_language(page) -> tuple[str | None, str | None]:
    html = page.locator("html")
    return html.get_attribute("lang"), html.get_attribute("dir")


def small_touch_targets(page) -> list[str]:
    return page.evaluate(TOUCH_TARGETS_JS, MIN_TARGET)


def horizontal_overflow(page) -> int | None:
    """Pixels the page scrolls sideways on a 360x640 phone (None when it does not)."""
    size = page.viewport_size
    page.set_viewport_size(SMALL_PHONE)
    try:
        page.wait_for_function("() => document.documentElement.clientWidth === 360")
        scroll, client = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        return scroll - client if scroll > client else None
    finally:
        page.set_viewport_size(size)


def check_page_fits_a_phone(page, problems: list[str]) -> None:
    """Touch targets of 48 px or more and no sideways scroll at 360 px; adds what fails to problems."""
    where = urlsplit(page.url).path
    problems.extend(f"{where}: {offender} (under {MIN_TARGET} px)" for offender in small_touch_targets(page))
    overflow = horizontal_overflow(page)
    if overflow:
        problems.append(f"{where}: scrolls sideways by {overflow} px at 360x640")
