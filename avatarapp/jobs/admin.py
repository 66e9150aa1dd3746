from django.contrib import admin

from avatarapp.jobs.models import Job, Output


class OutputInline(admin.TabularInline):
    model = Output
    extra = 0
    readonly_fields = ["storage_key", "thumbnail_key", "width", "height", "size_bytes"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "pack", "status", "progress", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "pack"]
    inlines = [OutputInline]


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "user", "width", "height", "created_at"]
