"""The public side of a share link: /s/<token>, its card image and its picture.

Nothing here names the owner or a storage path; a revoked or expired token
answers 404 for the page and both images at once, because every request looks
the token up again.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from avatarapp.lib.ratelimit import allow, client_ip
from avatarapp.sharing.cards import CARD_SIZE, request_card, stored_card
from avatarapp.sharing.models import Report, Share

# Shown to the person reporting, in their language (the stored value stays English).
REPORT_REASONS = [
    (Report.Reason.NOT_CONSENTED, gettext_lazy("It shows me or someone who did not agree")),
    (Report.Reason.OFFENSIVE, gettext_lazy("It is offensive or sexual")),
    (Report.Reason.MINOR, gettext_lazy("It shows a child")),
    (Report.Reason.OTHER, gettext_lazy("Something else")),
]


def live_share(token: str) -> Share:
    share = Share.objects.select_related("output").filter(token=token).first()
    # A flagged picture is never shared (the action refuses it); this is the second safeguard, for a
    # link made before the picture was flagged by a moderator's check.
    if share is None or not share.is_live or share.output.flagged:
        raise Http404
    return share


def share_page(request: HttpRequest, token: str) -> HttpResponse:
    share = live_share(token)
    Share.objects.filter(token=token).update(views=F("views") + 1)
    page_url = settings.SITE_URL + reverse("share_page", kwargs={"token": token})
    # The preview card speaks the sharer's language: their friends most likely read it too.
    with translation.override(share.language):
        og_title = translation.gettext("An AI portrait made with Chhavi")
        og_description = translation.gettext("Made from a selfie in seconds. Make your own avatar, free.")
    return render(request, "sharing/share_page.html", {
        "share": share,
        "output": share.output,
        "page_url": page_url,
        "og_title": og_title,
        "og_description": og_description,
        "card_url": settings.SITE_URL + reverse("share_card", kwargs={"token": token}),
        "card_width": CARD_SIZE[0],
        "card_height": CARD_SIZE[1],
        "image_url": reverse("share_image", kwargs={"token": token}),
        "report_reasons": REPORT_REASONS,
    })


@require_POST
def report_share(request: HttpRequest, token: str) -> HttpResponse:
    share = live_share(token)
    reason = request.POST.get("reason", "")
    if reason not in Report.Reason.values:
        messages.error(request, _("Please choose a reason."))
        return redirect("share_page", token=token)
    if allow("report", client_ip(request), 20):
        Report.objects.create(share_token=token, output=share.output, reason=reason,
                              details=request.POST.get("details", "")[:2000])
    messages.success(request, _("Thank you. Our team will look at this picture."))
    return redirect("share_page", token=token)


@cache_control(public=True, no_cache=True)
def share_card(request: HttpRequest, token: str) -> HttpResponse:
    share = live_share(token)
    data = stored_card(share.output)
    if data is not None:
        return HttpResponse(data, content_type="image/jpeg")
    # The worker marks and signs cards (see sharing/cards.py); until it has made this one, the
    # picture itself stands in: it carries the same mark and manifest.
    request_card(share.output)
    return share_image(request, token)


@cache_control(public=True, no_cache=True)
def share_image(request: HttpRequest, token: str) -> HttpResponse:
    share = live_share(token)
    try:
        with default_storage.open(share.output.storage_key, "rb") as f:
            data = f.read()
    except (FileNotFoundError, OSError):
        raise Http404 from None
    return HttpResponse(data, content_type=share.output.content_type)
