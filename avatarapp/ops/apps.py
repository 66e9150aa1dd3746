from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operator commands: serve, and the housekeeping that keeps a deployment tidy."""

    name = "avatarapp.ops"
