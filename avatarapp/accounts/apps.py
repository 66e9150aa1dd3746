from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "avatarapp.accounts"
    default_auto_field = "django.db.models.BigAutoField"
