"""On a phone, in Hindi: the "Your likeness model" page, from its consent to a ready model, deleted.

Both consents, six selfies and a photo without a face uploaded at once, training started; no worker
trains here, so the test moves the run itself (as the worker would write it) and watches the page:
the bar follows the steps without a reload, and the finished model reloads the page with its report.
"""

from __future__ import annotations

import re
import shutil

import pytest
from django.utils import timezone
from django.utils.translation import gettext, ngettext, override
from playwright.sync_api import expect

from tests.browser import FIXTURES, browser, phone, screenshot, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPORT = {"pictures": 4, "without_model": 0.35, "with_model": 0.62,
          "faces_found_without": 4, "faces_found_with": 4, "note": ""}

# Set on window in one document: still there means the page did not reload (nor navigate) since.
SAME_DOCUMENT = "() => window.__likenessTestMark === 'same document'"


@pytest.fixture(autouse=True)
def empty_train_queue():
    """The run started here queues its first chunk on the real broker; no worker of a later test should get it."""
    yield
    from avatarapp.celery import app, train_queue

    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(train_queue("demo"), durable=True)
        conn.default_channel.queue_purge(train_queue("demo"))


def mark_document(page) -> None:
    page.evaluate("() => { window.__likenessTestMark = 'same document'; }")


def test_a_hindi_reader_trains_watches_and_deletes_a_likeness_model(phone, tmp_path):
    from avatarapp.front.likeness_views import report_sentences
    from avatarapp.training.models import TrainingRun

    device = phone("hi-IN")
    page = device.page

    # The photo consent first, then the page's own consent for a model of the face.
    page.goto("/consent?next=/likeness")
    assert page.locator("html").get_attribute("lang") == "hi"
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/likeness$"))
    consent = page.locator("form[action='/likeness/consent']")
    expect(consent).to_be_visible()
    consent.locator("input[name=agree]").check()
    consent.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/likeness$"))

    # Six selfies and a photo without a face, chosen at once: the refused one is named, six can be used.
    selfies = []
    for number in range(1, 7):
        selfies.append(tmp_path / f"selfie-{number}.jpg")
        shutil.copyfile(FIXTURES / "portrait.jpg", selfies[-1])
    page.locator("input#images[name=images][multiple]").set_input_files([*selfies, FIXTURES / "no_face.jpg"])
    page.locator("form[action='/likeness/selfies'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/likeness/selfies$"))
    with override("hi"):
        no_face = gettext("We could not find a face in this photo. Please use a clear photo of your face, "
                          "looking at the camera, in good light.")
        uploaded = ngettext("%(counter)s selfie was uploaded.", "%(counter)s selfies were uploaded.", 6) % {
            "counter": 6}
        usable = ngettext("You have %(counter)s selfie that can be used.",
                          "You have %(counter)s selfies that can be used.", 6) % {"counter": 6}
    refusals = page.locator("ul.refusals li")
    expect(refusals).to_have_count(1)
    expect(refusals).to_have_text(f"no_face.jpg: {no_face}")
    expect(page.locator(".upload-outcome [role=status]")).to_have_text(uploaded)
    choice = page.locator("form[action='/likeness/start']")
    expect(choice.locator("input[name=photos]:checked")).to_have_count(6)
    expect(choice).to_contain_text(usable)
    for selfie in choice.locator("img").all():
        selfie.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=selfie.element_handle())

    # Training starts: queued, and the page shows its progress.
    choice.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/likeness$"))
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.QUEUED and len(run.samples) == 6
    model = page.locator("#likeness-model")
    expect(model).to_have_attribute("data-status", "queued")
    bar = page.locator("progress#likeness-progress")
    expect(bar).to_be_visible()
    assert bar.evaluate("el => el.value") == 0

    # The worker takes it: a change of state, which the page's script answers with a reload.
    mark_document(page)
    TrainingRun.objects.filter(id=run.id).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now())
    expect(model).to_have_attribute("data-status", "running")
    assert not page.evaluate(SAME_DOCUMENT), "the page should reload when the training starts"

    # Halfway: the bar follows the steps in the same document, without a reload.
    mark_document(page)
    TrainingRun.objects.filter(id=run.id).update(current_step=run.total_steps // 2)
    page.wait_for_function("() => document.getElementById('likeness-progress').value === 50")
    assert page.evaluate(SAME_DOCUMENT), "the page reloaded to move the bar"
    # The words under the bar follow too, in Hindi ("Step 400 of 800 · 50 per cent done").
    half = run.total_steps // 2
    expect(page.locator("#likeness-steps")).to_contain_text(str(half))
    expect(page.locator("#likeness-steps")).not_to_contain_text("Step")
    screenshot(page, "hi", "likeness-training")

    # Done: the page reloads by itself and says what the model does, in words.
    TrainingRun.objects.filter(id=run.id).update(
        status=TrainingRun.Status.SUCCEEDED, step=run.total_steps, current_step=run.total_steps,
        finished_at=timezone.now(), report=REPORT, lora_key=f"users/{run.user_id}/likeness/model.safetensors")
    expect(model).to_have_attribute("data-status", "succeeded")
    assert not page.evaluate(SAME_DOCUMENT), "the ready model should come with a reload"
    expect(page).to_have_url(re.compile(r"/likeness$"))
    with override("hi"):
        ready = gettext("Your likeness model is ready")
        lines = report_sentences(REPORT)
        delete = gettext("Delete my likeness model")
    with override("en"):
        english = report_sentences(REPORT)
    assert len(lines) == 2 and lines != english, f"the report is not in Hindi: {lines}"
    expect(model.locator("h2")).to_have_text(ready)
    for line in lines:
        expect(model.locator("p", has_text=line)).to_have_count(1)
    expect(page.locator("progress")).to_have_count(0)
    expect(model.locator("a[href='/upload']")).to_be_visible()
    screenshot(page, "hi", "likeness")

    # Deleted with its button: gone, and the selfies can be chosen again.
    button = model.locator(f"form[action='/likeness/{run.id}/delete'] button[type=submit]")
    expect(button).to_have_text(delete)
    button.click()
    expect(page).to_have_url(re.compile(r"/likeness$"))
    expect(page.locator("#likeness-model")).to_have_count(0)
    expect(page.locator("form[action='/likeness/start'] input[name=photos]")).to_have_count(6)
    assert not TrainingRun.objects.exists()
    assert page.locator("html").get_attribute("lang") == "hi"
    device.assert_only_own_requests()
