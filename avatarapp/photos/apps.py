from django.apps import AppConfig


class PhotosConfig(AppConfig):
    name = "avatarapp.photos"
    default_auto_field = "django.db.models.BigAutoField"
