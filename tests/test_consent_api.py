"""Consent comes before any upload, in the user's language."""

import pytest

from tests.helpers import Api, new_guest

pytestmark = pytest.mark.django_db


def test_the_consent_text_is_localised():
    english = Api(language="en").get("/consent").json()
    hindi = Api(language="hi").get("/consent").json()
    assert english["version"] == hindi["version"] == 1
    assert "18" in english["text"]
    assert hindi["text"] != english["text"]


def test_uploading_before_consent_is_refused():
    api = new_guest(consent=False)
    response = api.upload_fixture()
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "consent_required"


def test_consent_needs_the_current_version_and_adulthood():
    api = new_guest(consent=False)
    assert api.post("/me/consent", {"version": 99, "adult": True}).status_code == 400
    response = api.post("/me/consent", {"version": 1, "adult": False})
    assert response.status_code == 400
    assert "adult" in response.json()["error"]["fields"]
    assert api.post("/me/consent", {"version": 1, "adult": True}).status_code == 204
    assert api.get("/me").json()["consent_version"] == 1
