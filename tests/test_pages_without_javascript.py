"""The whole flow works as plain HTML forms: consent, upload, choose a style, see progress."""

import re

import pytest
from django.test import Client

from avatarapp.jobs.models import Job
from tests.helpers import FIXTURES, third_party_urls, urls_in_html

pytestmark = pytest.mark.django_db


def test_a_visitor_submits_a_photo_and_a_style_with_forms_only(packs):
    client = Client(headers={"Accept-Language": "hi"})
    landing = client.get("/")
    assert landing.status_code == 200 and '<html lang="hi" dir="ltr">' in landing.content.decode()

    assert client.get("/upload").url.startswith("/consent")
    refused = client.post("/consent", {"adult": "yes"})
    assert refused.status_code == 400
    accepted = client.post("/consent", {"adult": "yes", "agree": "yes", "next": "/upload"})
    assert accepted.url == "/upload"

    with (FIXTURES / "portrait.jpg").open("rb") as f:
        uploaded = client.post("/upload", {"image": f})
    assert uploaded.status_code == 302
    style_page = client.get(uploaded.url)
    assert style_page.status_code == 200
    assert 'value="avatar"' in style_page.content.decode()

    created = client.post(uploaded.url, {"pack": "avatar"})
    job = Job.objects.get()
    assert created.url == f"/jobs/{job.id}"
    progress = client.get(created.url).content.decode()
    assert 'role="status"' in progress and 'aria-live="polite"' in progress
    assert '<meta http-equiv="refresh"' in progress  # without JavaScript the page refreshes itself
    assert re.search(r'<progress[^>]+value="0"', progress)


def test_a_bad_upload_shows_a_localised_error_on_the_page(packs):
    client = Client(headers={"Accept-Language": "ta"})
    client.post("/consent", {"adult": "yes", "agree": "yes"})
    with (FIXTURES / "too_small.jpg").open("rb") as f:
        response = client.post("/upload", {"image": f})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'role="alert"' in html
    assert "too small" not in html  # it is in Tamil


def test_urdu_pages_are_right_to_left_and_every_page_offers_every_language(packs):
    html = Client(headers={"Accept-Language": "ur"}).get("/").content.decode()
    assert '<html lang="ur" dir="rtl">' in html
    for code in ("en", "hi", "bn", "mr", "te", "ta", "gu", "kn", "ml", "pa", "or", "ur"):
        assert f'<option value="{code}"' in html


def test_choosing_a_language_is_remembered():
    client = Client()
    client.post("/i18n/setlang/", {"language": "bn", "next": "/"})
    assert '<html lang="bn"' in client.get("/").content.decode()


def test_pages_make_no_third_party_requests():
    client = Client()
    for path in ["/", "/consent", "/offline"]:
        response = client.get(path)
        assert response.status_code == 200, path
        urls = urls_in_html(response.content.decode())
        assert urls, f"{path}: no link or resource found; is the page empty?"
        assert third_party_urls(urls, "http://testserver") == [], path


def test_the_account_remembers_the_language_its_pictures_are_labelled_in(packs):
    from avatarapp.accounts.models import User

    client = Client(headers={"Accept-Language": "en"})
    client.post("/consent", {"adult": "yes", "agree": "yes"})
    user = User.objects.get()
    assert user.language == "en"
    client.post("/i18n/setlang/", {"language": "ta", "next": "/gallery"})
    client.get("/gallery")
    user.refresh_from_db()
    assert user.language == "ta"
