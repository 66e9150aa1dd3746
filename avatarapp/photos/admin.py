from django.contrib import admin

from avatarapp.photos.models import Photo


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "width", "height", "created_at", "expires_at"]
    readonly_fields = ["storage_key"]
