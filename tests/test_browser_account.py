"""On a phone, in Hindi: a guest makes a picture, secures the account, signs out and in, exports, erases."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from playwright.sync_api import expect

from tests.browser import browser, phone, screenshot, site  # noqa: F401
from tests.helpers import picture_for_the_latest_guest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_hindi_guest_secures_signs_out_and_in_exports_and_erases_the_account(phone):
    from avatarapp.accounts.models import User

    device = phone("hi-IN")
    page = device.page
    page.goto("/consent?next=/gallery")
    assert page.locator("html").get_attribute("lang") == "hi"
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/gallery$"))
    output_id = picture_for_the_latest_guest()

    # Secure the guest account: the same account, now with an email and a password.
    page.goto("/account")
    page.locator("a[href='/sign-up']").click()
    page.locator("#f-email").fill("asha@example.com")
    page.locator("#f-password").fill("a long passphrase")
    screenshot(page, "hi", "secure-account")
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/gallery$"))
    assert not User.objects.get(email="asha@example.com").is_guest

    # Sign out, then sign in again on the same phone: the picture is still there.
    page.goto("/account")
    page.locator("form[action='/account/sign-out'] button").click()
    expect(page).to_have_url(re.compile(r"/$"))
    page.goto("/sign-in")
    page.locator("#f-email").fill("asha@example.com")
    page.locator("#f-password").fill("a long passphrase")
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/gallery$"))
    expect(page.locator(f"a[href='/results/{output_id}']")).to_be_visible()

    # Download my data: a zip with the profile, consent history and the picture.
    page.goto("/account")
    screenshot(page, "hi", "your-data")
    with page.expect_download() as download:
        page.locator("a[href='/account/export']").click()
    archive = zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read()))
    summary = json.loads(archive.read("chhavi.json"))
    assert summary["email"] == "asha@example.com"
    assert [e["kind"] for e in summary["consent_history"]] == ["granted"]
    assert f"outputs/{output_id}.webp" in archive.namelist()

    # Delete my account, confirmed: everything goes and the phone is signed out.
    page.locator("a[href='/account/delete']").click()
    page.locator("input[name=confirm]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/$"))
    assert not User.objects.filter(email="asha@example.com").exists()
    assert page.locator("html").get_attribute("lang") == "hi"
    device.assert_only_own_requests()
