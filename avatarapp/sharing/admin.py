"""Share links and reports in the admin. Moderators (`jobs.moderate_output`, see avatarapp/jobs/admin.py)
see both, newest report first, and act on them with the actions: dismiss a report, take a share link
down, remove the reported picture."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from avatarapp.actions.outputs import is_moderator
from avatarapp.actions.shares import do_dismiss_reports, do_take_down_share
from avatarapp.jobs.admin import moderator, picture_tag, remove_pictures
from avatarapp.sharing.models import Report, Share

REPORT_FIELDS = ("created_at", "reason", "details", "share_link", "share_live", "output", "large_picture", "resolved")


class ModeratorsToo:
    """Moderators see these too, whatever their other permissions, and may run the moderation actions."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_moderator(moderator(request)) or super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_moderator(moderator(request)) or super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return is_moderator(moderator(request))


def share_page_link(token: str) -> SafeString:
    return format_html('<a href="{}" target="_blank" rel="noopener">{}…</a>',
                       reverse("share_page", kwargs={"token": token}), token[:6])


def take_down(model_admin: admin.ModelAdmin, request: HttpRequest, tokens: list[str]) -> None:
    taken = sum(do_take_down_share(moderator(request), token) for token in tokens)
    model_admin.message_user(request, f"Took down {taken} share link(s); their pages answer 404 now.",
                             messages.SUCCESS)


@admin.register(Share)
class ShareAdmin(ModeratorsToo, admin.ModelAdmin):
    list_display = ["token", "output", "output_flagged", "created_at", "expires_at", "views"]
    list_filter = ["output__flagged"]
    list_select_related = ["output"]
    ordering = ["-created_at"]
    actions = ["take_down_selected"]

    @admin.display(description="flagged", boolean=True)
    def output_flagged(self, obj: Share) -> bool:
        return obj.output.flagged

    @admin.action(description="Take down the share links", permissions=["moderate"])
    def take_down_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        shares = list(queryset)
        for share in shares:
            self.log_change(request, share, "Taken down")
        take_down(self, request, [share.token for share in shares])


@admin.register(Report)
class ReportAdmin(ModeratorsToo, admin.ModelAdmin):
    list_display = ["id", "created_at", "reason", "short_details", "share_link", "share_live", "picture", "resolved"]
    list_filter = ["resolved", "reason"]
    ordering = ["-created_at"]
    fields = REPORT_FIELDS
    readonly_fields = REPORT_FIELDS
    actions = ["dismiss_selected", "take_down_reported_shares", "remove_reported_pictures"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("output")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # reports come from share pages

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # resolved by the actions below, which say what was done

    @admin.display(description="details")
    def short_details(self, obj: Report) -> str:
        return obj.details[:120]

    @admin.display(description="share link")
    def share_link(self, obj: Report) -> SafeString:
        return share_page_link(obj.share_token)

    @admin.display(description="link live", boolean=True)
    def share_live(self, obj: Report) -> bool:
        return Share.objects.filter(token=obj.share_token).exists()

    @admin.display(description="picture")
    def picture(self, obj: Report) -> SafeString | str:
        return picture_tag(obj.output, 64) if obj.output is not None else "removed"

    @admin.display(description="picture")
    def large_picture(self, obj: Report) -> SafeString | str:
        return picture_tag(obj.output, 384) if obj.output is not None else "removed"

    @admin.action(description="Dismiss the reports (keep the pictures and links)", permissions=["moderate"])
    def dismiss_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        reports = list(queryset)
        dismissed = do_dismiss_reports(moderator(request), [r.id for r in reports])
        for report in reports:
            self.log_change(request, report, "Dismissed")
        self.message_user(request, f"Dismissed {dismissed} report(s).", messages.SUCCESS)

    @admin.action(description="Take down the reported share links (the pictures stay)", permissions=["moderate"])
    def take_down_reported_shares(self, request: HttpRequest, queryset: QuerySet) -> None:
        reports = list(queryset)
        for report in reports:
            self.log_change(request, report, "Took down the reported share link")
        take_down(self, request, sorted({r.share_token for r in reports}))

    @admin.action(description="Remove the reported pictures (files, row and share links)", permissions=["moderate"])
    def remove_reported_pictures(self, request: HttpRequest, queryset: QuerySet) -> None:
        outputs = {r.output.id: r.output for r in queryset if r.output is not None}
        remove_pictures(self, request, list(outputs.values()))
