"""Jobs and outputs in the admin, and the moderation queue.

Moderation ("Moderation" under Jobs) lists the outputs the content safety check flagged and those
someone reported through a share page, newest first. A moderator (a staff user with the
`jobs.moderate_output` permission, or a superuser) removes a picture (files, row and share links:
its public page answers 404 at once), takes its share links down, or dismisses the reports against
it. Every change goes through the action layer (avatarapp/actions/), which checks the permission
again, and is written to the admin's log.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.core.files.storage import default_storage
from django.db.models import Count, Max, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from avatarapp.accounts.models import User
from avatarapp.actions.outputs import do_remove_output, is_moderator
from avatarapp.actions.shares import do_dismiss_reports, do_take_down_share
from avatarapp.jobs.models import Job, ModerationItem, Output
from avatarapp.sharing.models import Report

PICTURE_KINDS = ("thumbnail", "image")
MODERATION_FIELDS = ("large_picture", "flagged", "flag_reason", "report_summary", "share_links", "user", "job",
                     "created_at")


def moderator(request: HttpRequest) -> User:
    # The admin's pages are for signed-in staff; its index also asks for anonymous visitors, whom
    # is_moderator() refuses.
    return cast(User, request.user)


def picture_url(output_id: Any, kind: str = "thumbnail") -> str:
    return reverse("admin:jobs_moderationitem_picture", args=[output_id, kind])


def picture_tag(output: Output, size: int = 128) -> SafeString:
    """The stored picture (blurred if the check flagged it), for moderators only."""
    return format_html('<a href="{}"><img src="{}" width="{}" height="{}" alt="output {}"></a>',
                       picture_url(output.id, "image"), picture_url(output.id), size, size, output.id)


def remove_pictures(model_admin: admin.ModelAdmin, request: HttpRequest, outputs: list[Output]) -> None:
    """Remove each output (files, row, share links), logged in the admin's log first."""
    model_admin.log_deletions(request, outputs)  # type: ignore[arg-type]
    removed = sum(do_remove_output(moderator(request), output.id) for output in outputs)
    model_admin.message_user(request, f"Removed {removed} picture(s); their share links are down.", messages.SUCCESS)


class ReportedFilter(admin.SimpleListFilter):
    title = "open reports"
    parameter_name = "reported"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Reported"), ("no", "Not reported")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(open_reports__gt=0)
        if self.value() == "no":
            return queryset.filter(open_reports=0)
        return queryset


class ModeratorsOnly:
    """Visible to moderators only, read-only: changes are made with the actions."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_moderator(moderator(request))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_moderator(moderator(request))

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return is_moderator(moderator(request))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModerationItem)
class ModerationAdmin(ModeratorsOnly, admin.ModelAdmin):
    list_display = ["picture", "id", "flag_reason", "open_report_count", "report_summary", "share_links", "user",
                    "created_at"]
    list_display_links = ["id"]
    list_filter = ["flagged", "flag_reason", ReportedFilter, "reports__reason"]
    search_fields = ["id", "user__email", "shares__token"]
    fields = MODERATION_FIELDS
    readonly_fields = MODERATION_FIELDS
    actions = ["remove_selected", "take_down_shares", "dismiss_reports"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        open_reports = Q(reports__resolved=False)
        return (
            # Not super()'s: it orders by get_ordering() before the annotation it names exists.
            self.model._default_manager.get_queryset()
            .select_related("user", "job__pack")
            .prefetch_related("shares", Prefetch("reports", to_attr="open_reports_list",
                                                 queryset=Report.objects.filter(resolved=False).order_by("-created_at")))
            .annotate(open_reports=Count("reports", filter=open_reports, distinct=True),
                      last_report_at=Max("reports__created_at", filter=open_reports))
            .annotate(last_event_at=Coalesce("last_report_at", "created_at"))
            .filter(Q(flagged=True) | Q(open_reports__gt=0))
            .order_by("-last_event_at")
        )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        return ["-last_event_at"]  # newest flag or report first

    def get_urls(self) -> list[URLPattern]:
        own = [path("<uuid:output_id>/picture/<str:kind>/", self.admin_site.admin_view(self.picture_view),
                    name="jobs_moderationitem_picture")]
        return own + super().get_urls()

    def picture_view(self, request: HttpRequest, output_id: Any, kind: str) -> HttpResponse:
        if not self.has_view_permission(request) or kind not in PICTURE_KINDS:
            raise Http404
        output = Output.objects.filter(id=output_id).first()
        if output is None:
            raise Http404
        try:
            with default_storage.open(output.storage_key if kind == "image" else output.thumbnail_key, "rb") as f:
                data = f.read()
        except (FileNotFoundError, OSError):
            raise Http404 from None
        response = HttpResponse(data, content_type=output.content_type)
        response["Cache-Control"] = "private, no-store"
        return response

    @admin.display(description="picture")
    def picture(self, obj: ModerationItem) -> SafeString:
        return picture_tag(obj)

    @admin.display(description="picture")
    def large_picture(self, obj: ModerationItem) -> SafeString:
        return picture_tag(obj, 384)

    @admin.display(description="open reports", ordering="open_reports")
    def open_report_count(self, obj: ModerationItem) -> int:
        return getattr(obj, "open_reports", 0)

    @admin.display(description="reports")
    def report_summary(self, obj: ModerationItem) -> SafeString:
        reports = getattr(obj, "open_reports_list", None)
        if reports is None:
            reports = list(Report.objects.filter(output=obj, resolved=False).order_by("-created_at"))
        return format_html_join("", "<p>{} ({}): {}</p>",
                                ((r.get_reason_display(), r.created_at.strftime("%Y-%m-%d %H:%M"), r.details[:200])
                                 for r in reports))

    @admin.display(description="share links")
    def share_links(self, obj: ModerationItem) -> SafeString:
        return format_html_join(" ", '<a href="{}" target="_blank" rel="noopener">{}…</a>',
                                ((reverse("share_page", kwargs={"token": s.token}), s.token[:6])
                                 for s in obj.shares.all()))

    @admin.action(description="Remove the pictures (files, row and share links)", permissions=["moderate"])
    def remove_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        remove_pictures(self, request, list(queryset))

    @admin.action(description="Take down their share links (the pictures stay with their owners)",
                  permissions=["moderate"])
    def take_down_shares(self, request: HttpRequest, queryset: QuerySet) -> None:
        taken = 0
        for output in queryset:
            # The live links, and the reported ones already gone (which resolves their reports).
            tokens = {s.token for s in output.shares.all()}
            tokens |= {r.share_token for r in getattr(output, "open_reports_list", [])}
            taken += sum(do_take_down_share(moderator(request), token) for token in sorted(tokens))
            self.log_change(request, output, "Took down its share links")
        self.message_user(request, f"Took down {taken} share link(s).", messages.SUCCESS)

    @admin.action(description="Dismiss their open reports (keep the pictures and links)", permissions=["moderate"])
    def dismiss_reports(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = Report.objects.filter(output__in=[o.id for o in queryset], resolved=False).values_list("id", flat=True)
        dismissed = do_dismiss_reports(moderator(request), list(ids))
        for output in queryset:
            self.log_change(request, output, "Dismissed its reports")
        self.message_user(request, f"Dismissed {dismissed} report(s).", messages.SUCCESS)


class OutputInline(admin.TabularInline):
    model = Output
    extra = 0
    readonly_fields = ["storage_key", "thumbnail_key", "width", "height", "size_bytes", "flagged", "flag_reason"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "pack", "status", "progress", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "pack"]
    inlines = [OutputInline]


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "user", "width", "height", "flagged", "flag_reason", "created_at"]
    list_filter = ["flagged", "flag_reason"]
    actions = ["remove_selected"]  # files too, not only the row (as "delete" would)

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return is_moderator(moderator(request))

    @admin.action(description="Remove the pictures (files, row and share links)", permissions=["moderate"])
    def remove_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        remove_pictures(self, request, list(queryset))
