from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Photo(models.Model):
    """A user's selfie after normalising: upright, metadata stripped, re-encoded."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="photos")
    storage_key = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=40, default="image/jpeg")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"photo {self.id}"
