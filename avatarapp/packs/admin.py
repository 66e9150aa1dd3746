from django.contrib import admin

from avatarapp.packs.models import StylePack


@admin.register(StylePack)
class StylePackAdmin(admin.ModelAdmin):
    list_display = ["slug", "version", "base_family", "enabled", "position"]
    list_editable = ["enabled", "position"]
