from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "avatarapp.jobs"
    default_auto_field = "django.db.models.BigAutoField"
