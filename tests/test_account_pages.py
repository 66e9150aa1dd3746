"""The account pages: plain forms that work without JavaScript, through the same actions as the API."""

import re

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.test import Client

from avatarapp.accounts.models import ConsentEvent, User
from avatarapp.jobs.models import Job, Output
from avatarapp.lib.sms import LocmemSmsBackend
from avatarapp.photos.models import Photo
from tests.helpers import FIXTURES, store_output_for

pytestmark = pytest.mark.django_db


def guest_with_a_picture(packs) -> tuple[Client, User, Output]:
    client = Client(enforce_csrf_checks=False)
    assert client.post("/consent", {"adult": "yes", "agree": "yes"}).status_code == 302
    with (FIXTURES / "portrait.jpg").open("rb") as f:
        choose = client.post("/upload", {"image": f}).url
    client.post(choose, {"pack": "avatar"})
    job = Job.objects.get()
    return client, job.user, store_output_for(job)


def test_a_guest_secures_the_account_keeps_the_pictures_and_signs_in_again(packs):
    client, guest, output = guest_with_a_picture(packs)
    page = client.get("/sign-up").content.decode()
    assert 'name="password"' in page and 'type="password"' in page and "csrfmiddlewaretoken" in page

    short = client.post("/sign-up", {"email": "asha@example.com", "password": "short"})
    assert short.status_code == 400
    assert 'aria-invalid="true"' in short.content.decode()

    saved = client.post("/sign-up", {"email": "asha@example.com", "password": "a long passphrase"})
    assert saved.status_code == 302
    user = User.objects.get(id=guest.id)
    assert (user.is_guest, user.email) == (False, "asha@example.com")

    assert client.post("/account/sign-out").status_code == 302
    assert client.get("/gallery").status_code == 302  # signed out: back to the consent page

    wrong = client.post("/sign-in", {"email": "asha@example.com", "password": "not it at all"})
    assert wrong.status_code == 401
    assert client.post("/sign-in", {"email": "asha@example.com", "password": "a long passphrase"}).status_code == 302
    assert str(output.id) in client.get("/gallery").content.decode()


def test_a_forgotten_password_is_reset_by_an_emailed_link(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    User.objects.create_user(email="ravi@example.com", password="old password 1")
    client = Client()
    assert client.post("/password-reset", {"email": "ravi@example.com"}).status_code == 302
    # An unknown address gets the same answer, and no message.
    assert client.post("/password-reset", {"email": "nobody@example.com"}).status_code == 302
    [message] = mail.outbox
    link = re.search(r"http://testserver(/password-reset/\S+)", message.body).group(1)

    assert client.post(link, {"password": "new password 2"}).status_code == 302
    assert User.objects.get(email="ravi@example.com").check_password("new password 2")
    assert client.post(link, {"password": "again password 3"}).status_code == 400  # used once only


def test_a_forgotten_password_is_reset_by_a_code_sent_to_the_phone(settings):
    settings.AVATAR_SMS_BACKEND = "avatarapp.lib.sms.LocmemSmsBackend"
    LocmemSmsBackend.outbox.clear()
    User.objects.create_user(phone="+919812345678", password="old password 1")
    client = Client()
    sent = client.post("/password-reset", {"phone": "+91 98123 45678"})
    assert sent.status_code == 302 and sent.url.startswith("/password-reset/code")
    [(to, text)] = LocmemSmsBackend.outbox
    code = re.search(r"\b(\d{6})\b", text).group(1)
    assert to == "+919812345678"

    wrong = "000000" if code != "000000" else "111111"
    def attempt(code: str) -> int:
        return client.post("/password-reset/code", {"phone": to, "code": code, "password": "new pass 2"}).status_code

    assert attempt(wrong) == 400
    assert attempt(code) == 302
    assert User.objects.get(phone=to).check_password("new pass 2")


def test_the_your_data_page_withdraws_consent_deletes_a_photo_and_exports(packs):
    client, user, _ = guest_with_a_picture(packs)
    with (FIXTURES / "portrait.jpg").open("rb") as f:
        client.post("/upload", {"image": f})
    photos = list(Photo.objects.filter(user=user))
    page = client.get("/account").content.decode()
    assert all(str(p.id) in page for p in photos)

    assert client.post(f"/account/photos/{photos[0].id}/delete").status_code == 302
    assert not Photo.objects.filter(id=photos[0].id).exists()
    export = client.get("/account/export")
    assert export.status_code == 200 and export["Content-Type"] == "application/zip"

    assert client.post("/account/consent/withdraw").status_code == 302
    assert not Photo.objects.filter(user=user).exists()
    assert [e.kind for e in ConsentEvent.objects.filter(user=user)] == ["granted", "withdrawn"]
    assert client.get("/upload").status_code == 302  # consent needed again


def test_deleting_the_account_from_the_page_leaves_no_row_file_or_session(packs):
    client, user, output = guest_with_a_picture(packs)
    assert client.post("/account/delete", {}).status_code == 400  # the box must be ticked
    assert client.post("/account/delete", {"confirm": "yes"}).status_code == 302
    assert not User.objects.filter(id=user.id).exists()
    assert not default_storage.exists(output.storage_key)
    assert client.get("/account").status_code == 302  # the session is gone too
