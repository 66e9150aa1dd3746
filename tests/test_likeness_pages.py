"""The "Your likeness model" page: its own consent, selfies, training, the result and deletion, as plain
forms without JavaScript, through the same actions as the API; and the choice on the choose-style page."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from avatarapp.accounts.consent import likeness_consent_version
from avatarapp.accounts.models import ConsentEvent, User
from avatarapp.actions.likeness import do_give_likeness_consent
from avatarapp.celery import app, train_queue
from avatarapp.jobs.models import Job
from avatarapp.photos.models import Photo
from avatarapp.training.models import TrainingRun
from tests.helpers import FIXTURES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_train_queue():
    """A run started here queues its first chunk on the real broker; no worker of a later test should get it."""
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(train_queue("demo"), durable=True)
        conn.default_channel.queue_purge(train_queue("demo"))


def consenting_guest(language: str = "en", likeness: bool = True) -> tuple[Client, User]:
    """A guest signed in through the consent page, with (by default) the likeness consent too."""
    client = Client(headers={"Accept-Language": language})
    assert client.post("/consent", {"adult": "yes", "agree": "yes"}).status_code == 302
    user = User.objects.latest("date_joined")
    if likeness:
        do_give_likeness_consent(user, likeness_consent_version())
    return client, user


def upload(client: Client, *names: str):
    files = [(FIXTURES / name).open("rb") for name in names]
    try:
        return client.post("/likeness/selfies", {"images": files})
    finally:
        for f in files:
            f.close()


def checked_photos(html: str) -> list[str]:
    return re.findall(r'name="photos" value="([0-9a-f-]{36})" checked', html)


def likeness_run(user: User, status: str = TrainingRun.Status.SUCCEEDED, **fields) -> TrainingRun:
    """A likeness model as the worker leaves it, without training one."""
    done = status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED)
    return TrainingRun.objects.create(
        kind=TrainingRun.Kind.LIKENESS, user=user, slug="likeness", caption="a photo of ohwx person",
        base_family="demo", source="selfies", total_steps=800, status=status,
        step=800 if status == TrainingRun.Status.SUCCEEDED else 0,
        lora_key=f"users/{user.id}/likeness/model.safetensors" if status == TrainingRun.Status.SUCCEEDED else "",
        finished_at=timezone.now() if done else None, **fields)


def test_the_likeness_consent_is_asked_for_first_and_recorded():
    client, user = consenting_guest(likeness=False)
    page = client.get("/likeness").content.decode()
    assert "likeness model of my face" in page  # the consent text itself
    assert 'name="agree"' in page and f'name="version" value="{likeness_consent_version()}"' in page
    assert 'name="images"' not in page  # no selfies before the consent
    assert upload(client, "portrait.jpg").url == "/likeness"
    assert not Photo.objects.exists()

    refused = client.post("/likeness/consent", {"version": likeness_consent_version()})
    assert refused.status_code == 400 and 'role="alert"' in refused.content.decode()
    outdated = client.post("/likeness/consent", {"version": likeness_consent_version() + 1, "agree": "yes"})
    assert outdated.status_code == 400
    assert not ConsentEvent.objects.filter(purpose=ConsentEvent.Purpose.LIKENESS).exists()

    assert client.post("/likeness/consent", {"version": likeness_consent_version(), "agree": "yes"}).url == "/likeness"
    event = ConsentEvent.objects.get(user=user, purpose=ConsentEvent.Purpose.LIKENESS)
    assert (event.kind, event.version) == (ConsentEvent.Kind.GRANTED, likeness_consent_version())
    page = client.get("/likeness").content.decode()
    assert re.search(r'<input[^>]+name="images"[^>]+multiple[^>]+accept="image/\*"', page)
    assert "/likeness/consent/withdraw" in page


def test_several_selfies_are_uploaded_at_once_and_a_bad_file_is_named_with_its_reason():
    client, user = consenting_guest()
    response = upload(client, "portrait.jpg", "no_face.jpg", "selfie_wide.jpg", "two_people.jpg")
    assert response.status_code == 200
    html = response.content.decode()
    assert Photo.objects.filter(user=user).count() == 3  # the good ones are kept
    assert re.search(r"no_face\.jpg: We could not find a face", html)
    assert "3 selfies were uploaded" in html
    # Two selfies of one face can be chosen; the photo of two people is shown, and why it cannot.
    one_face = {str(p.id) for p in Photo.objects.filter(user=user) if len(p.faces) == 1}
    assert set(checked_photos(html)) == one_face and len(one_face) == 2
    assert "more than one face in this photo" in html
    assert "Please upload at least 4 more." in html


def test_fewer_than_six_selfies_get_the_localised_error_and_train_nothing(packs):
    client, user = consenting_guest(language="hi")
    upload(client, *["portrait.jpg"] * 5)
    ids = checked_photos(client.get("/likeness").content.decode())
    assert len(ids) == 5
    response = client.post("/likeness/start", {"photos": ids})
    assert response.status_code == 400
    html = response.content.decode()
    assert '<html lang="hi"' in html and 'role="alert"' in html
    assert not TrainingRun.objects.exists()

    english = Client(headers={"Accept-Language": "en"})
    english.cookies = client.cookies
    assert "Please choose at least 6 selfies" in english.post("/likeness/start", {"photos": ids}).content.decode()
    assert not TrainingRun.objects.exists()


def test_six_selfies_start_training_and_the_page_shows_its_progress(packs):
    client, user = consenting_guest()
    upload(client, *["portrait.jpg"] * 6)
    ids = checked_photos(client.get("/likeness").content.decode())
    assert len(ids) == 6

    assert client.post("/likeness/start", {"photos": ids}).url == "/likeness"
    run = TrainingRun.objects.get()
    assert (run.kind, run.user, run.status) == (TrainingRun.Kind.LIKENESS, user, TrainingRun.Status.QUEUED)
    assert sorted(sample["photo"] for sample in run.samples) == sorted(ids)

    TrainingRun.objects.filter(id=run.id).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now(),
                                                 current_step=run.total_steps // 2)
    page = client.get("/likeness").content.decode()
    assert re.search(r'<progress[^>]+value="50"', page)
    assert f"Step {run.total_steps // 2} of {run.total_steps}" in page
    assert '<meta http-equiv="refresh"' in page  # it refreshes itself, with or without JavaScript
    assert 'name="images"' not in page  # one model at a time
    assert client.post("/likeness/start", {"photos": ids}).status_code == 409

    # Nobody else sees it or can delete it.
    other, _ = consenting_guest()
    assert str(run.id) not in other.get("/likeness").content.decode()
    assert other.post(f"/likeness/{run.id}/delete").status_code == 404
    assert TrainingRun.objects.filter(id=run.id).exists()

    assert client.post(f"/likeness/{run.id}/delete").url == "/likeness"
    assert not TrainingRun.objects.filter(id=run.id).exists()
    assert 'name="photos"' in client.get("/likeness").content.decode()  # the selfies can be chosen again


def test_a_ready_model_says_what_it_does_in_plain_words_and_can_be_deleted():
    client, user = consenting_guest()
    run = likeness_run(user, report={"pictures": 4, "without_model": 0.35, "with_model": 0.62,
                                     "faces_found_without": 3, "faces_found_with": 4, "note": ""})
    page = client.get("/likeness").content.decode()
    assert "Your likeness model is ready" in page
    assert "looked like you 62 out of 100 (without it: 35 out of 100)" in page
    assert "A face was found in 4 of 4 test pictures made with your model (without it: 3 of 4)" in page
    assert 'href="/upload"' in page
    assert "<meta http-equiv" not in page

    TrainingRun.objects.filter(id=run.id).update(report={"pictures": 4, "without_model": None, "with_model": None,
                                                         "note": "no face could be read in the selfies"})
    page = client.get("/likeness").content.decode()
    assert "could not be measured" in page and "no face could be read" not in page

    assert client.post(f"/likeness/{run.id}/delete").url == "/likeness"
    assert not TrainingRun.objects.exists()


def test_a_failed_run_is_said_plainly_and_can_be_tried_again():
    client, user = consenting_guest()
    run = likeness_run(user, status=TrainingRun.Status.FAILED, error="CUDA out of memory")
    page = client.get("/likeness").content.decode()
    assert "The training did not work" in page and "CUDA" not in page
    assert client.post(f"/likeness/{run.id}/delete", {"again": "yes"}).url == "/likeness"
    assert not TrainingRun.objects.exists()
    page = client.get("/likeness").content.decode()
    assert "Choose your selfies again" in page and 'name="images"' in page


def test_withdrawing_the_likeness_consent_deletes_the_model():
    client, user = consenting_guest()
    likeness_run(user)
    assert client.post("/likeness/consent/withdraw").url == "/likeness"
    assert not TrainingRun.objects.exists()
    assert ConsentEvent.objects.filter(user=user, purpose=ConsentEvent.Purpose.LIKENESS,
                                       kind=ConsentEvent.Kind.WITHDRAWN).exists()
    page = client.get("/likeness").content.decode()
    assert 'name="agree"' in page and "/likeness/consent/withdraw" not in page


def test_the_choose_style_page_offers_the_likeness_model_only_when_it_is_ready(packs):
    client, user = consenting_guest()
    with (FIXTURES / "portrait.jpg").open("rb") as f:
        style_url = client.post("/upload", {"image": f}).url

    page = client.get(style_url).content.decode()
    assert 'name="likeness"' not in page and 'href="/likeness"' in page
    run = likeness_run(user, status=TrainingRun.Status.RUNNING)
    assert 'name="likeness"' not in client.get(style_url).content.decode()

    TrainingRun.objects.filter(id=run.id).update(status=TrainingRun.Status.SUCCEEDED, finished_at=timezone.now(),
                                                 lora_key=f"users/{user.id}/likeness/model.safetensors")
    page = client.get(style_url).content.decode()
    assert re.search(r'<input type="checkbox" name="likeness" value="yes">', page)  # not ticked unasked

    assert client.post(style_url, {"pack": "avatar", "likeness": "yes"}).status_code == 302
    job = Job.objects.get()
    assert job.with_likeness and job.likeness_id == run.id
    assert client.post(style_url, {"pack": "avatar"}).status_code == 302
    assert not Job.objects.exclude(id=job.id).get().with_likeness


def test_the_pages_link_to_it_and_a_stranger_is_sent_to_the_consent_page():
    client, user = consenting_guest(likeness=False)
    assert 'href="/likeness"' in client.get("/account").content.decode()
    assert Client().get("/likeness").url.startswith("/consent")
    assert Client().post("/likeness/start").url.startswith("/consent")


def test_the_page_speaks_hindi():
    client, user = consenting_guest(language="hi", likeness=False)
    response = client.get("/likeness")
    assert response.status_code == 200
    assert '<html lang="hi" dir="ltr">' in response.content.decode()
    client.post("/likeness/consent", {"version": likeness_consent_version(), "agree": "yes"})
    response = client.get("/likeness")
    assert response.status_code == 200 and 'name="images"' in response.content.decode()
