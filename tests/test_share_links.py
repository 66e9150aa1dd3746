"""Share links: a public page with a proper preview card, under the owner's control."""

import io
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from PIL import Image

from avatarapp.provenance import metadata
from avatarapp.sharing.models import Report, Share
from tests.helpers import new_guest, store_picture

pytestmark = pytest.mark.django_db

TAGS = ["og:title", "og:description", "og:url", "og:type", "og:image", "og:image:width", "og:image:height"]


@pytest.fixture
def owner_and_output(packs):
    api = new_guest(language="hi")
    _, _, output = store_picture(api, "cinematic")
    return api, output


def meta(html: str, name: str) -> str | None:
    match = re.search(rf'<meta (?:property|name)="{re.escape(name)}" content="([^"]*)"', html)
    return match.group(1) if match else None


def share(api, output, **body):
    response = api.post(f"/outputs/{output.id}/shares", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_an_anonymous_visitor_sees_the_page_with_every_preview_tag(owner_and_output):
    api, output = owner_and_output
    link = share(api, output)
    assert len(link["token"]) >= 22  # at least 128 random bits
    assert link["url"] == f"http://testserver/s/{link['token']}"

    response = Client().get(f"/s/{link['token']}")
    assert response.status_code == 200
    html = response.content.decode()
    for tag in TAGS:
        assert meta(html, tag), tag
    assert meta(html, "twitter:card") == "summary_large_image"
    assert meta(html, "og:url") == link["url"]
    assert meta(html, "og:image").startswith("http://testserver/s/")
    assert (meta(html, "og:image:width"), meta(html, "og:image:height")) == ("1200", "630")
    # In the sharer's language (Hindi), not English.
    assert meta(html, "og:description") != "Made from a selfie in seconds. Make your own avatar, free."
    assert str(output.user_id) not in html and "users/" not in html


def test_the_card_is_a_small_1200x630_jpeg_labelled_as_ai_made(owner_and_output):
    api, output = owner_and_output
    link = share(api, output)
    response = Client().get(f"/s/{link['token']}/card.jpg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert len(response.content) <= 300 * 1024
    card = Image.open(io.BytesIO(response.content))
    assert card.format == "JPEG" and card.size == (1200, 630)
    found = metadata.read_provenance(card)
    assert found["digital_source_type"] == metadata.DIGITAL_SOURCE_TYPE
    assert "Chhavi" in found["software"] and "AI-generated" in found["description"]
    assert Client().get(f"/s/{link['token']}/card.jpg").content == response.content  # rendered once


def test_revoking_a_link_takes_the_page_and_images_down_at_once(owner_and_output):
    api, output = owner_and_output
    token = share(api, output)["token"]
    anonymous = Client()
    assert anonymous.get(f"/s/{token}/card.jpg").status_code == 200
    assert api.delete(f"/shares/{token}").status_code == 204
    for path in (f"/s/{token}", f"/s/{token}/card.jpg", f"/s/{token}/image"):
        assert anonymous.get(path).status_code == 404, path
    assert api.delete(f"/shares/{token}").status_code == 404


def test_an_expired_link_is_gone(owner_and_output):
    api, output = owner_and_output
    link = share(api, output, expires_in=3600)
    assert link["expires_at"]
    Share.objects.filter(token=link["token"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(f"/s/{link['token']}").status_code == 404
    assert Client().get(f"/s/{link['token']}/card.jpg").status_code == 404


def test_nobody_else_can_share_or_revoke_my_pictures(owner_and_output):
    api, output = owner_and_output
    token = share(api, output)["token"]
    stranger = new_guest()
    assert stranger.post(f"/outputs/{output.id}/shares").status_code == 404
    assert stranger.delete(f"/shares/{token}").status_code == 404
    assert Client().get(f"/s/{token}").status_code == 200


def test_views_are_counted_and_a_report_reaches_the_admin(owner_and_output):
    api, output = owner_and_output
    token = share(api, output)["token"]
    visitor = Client()
    visitor.get(f"/s/{token}")
    visitor.get(f"/s/{token}")
    assert Share.objects.get(token=token).views == 2
    response = visitor.post(f"/s/{token}/report", {"reason": "offensive", "details": "not ok"})
    assert response.status_code == 302
    report = Report.objects.get()
    assert report.output_id == output.id and report.reason == "offensive"
    assert visitor.post(f"/s/{token}/report", {"reason": "made-up"}).status_code == 302
    assert Report.objects.count() == 1
