from django.contrib import admin

from avatarapp.accounts.models import ApiToken, User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["id", "email", "phone", "is_guest", "language", "consent_version", "date_joined"]
    list_filter = ["is_guest", "language", "is_staff"]
    search_fields = ["email", "phone", "id"]
    exclude = ["password"]
    readonly_fields = ["session_epoch"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at", "last_used_at"]
    readonly_fields = ["key_hash", "last_used_at"]
