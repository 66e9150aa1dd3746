from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "avatarapp.accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from avatarapp.accounts import signals  # noqa: F401  (connects the receivers)
