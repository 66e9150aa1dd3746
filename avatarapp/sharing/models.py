from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


def new_share_token() -> str:
    # 24 random bytes: 192 bits, well above the 128 a guesser would need to beat.
    return secrets.token_urlsafe(24)


class Share(models.Model):
    """A public link to one output; deleting the row revokes the link at once."""

    token = models.CharField(max_length=64, primary_key=True, default=new_share_token)
    output = models.ForeignKey("jobs.Output", on_delete=models.CASCADE, related_name="shares")
    language = models.CharField(max_length=8, default="en")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    views = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"share {self.token[:6]}…"

    @property
    def is_live(self) -> bool:
        return self.expires_at is None or self.expires_at > timezone.now()


class Report(models.Model):
    """Someone flagged a shared picture; admins see these in the admin site."""

    class Reason(models.TextChoices):
        NOT_CONSENTED = "not_consented", "Shows me or someone without consent"
        OFFENSIVE = "offensive", "Offensive or sexual"
        MINOR = "minor", "Shows a child"
        OTHER = "other", "Something else"

    share_token = models.CharField(max_length=64)
    output = models.ForeignKey("jobs.Output", on_delete=models.SET_NULL, null=True, related_name="reports")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    details = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"report {self.id} ({self.reason})"
