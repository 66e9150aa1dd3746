from django.apps import AppConfig


class PacksConfig(AppConfig):
    name = "avatarapp.packs"
    default_auto_field = "django.db.models.BigAutoField"
