from django.contrib import admin

from avatarapp.sharing.models import Share


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ["token", "output", "created_at", "expires_at", "views"]


from avatarapp.sharing.models import Report  # noqa: E402


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["id", "reason", "output", "created_at", "resolved"]
    list_filter = ["reason", "resolved"]
    list_editable = ["resolved"]
