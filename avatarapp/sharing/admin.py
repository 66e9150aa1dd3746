from django.contrib import admin

from avatarapp.sharing.models import Share


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ["token", "output", "created_at", "expires_at", "views"]
