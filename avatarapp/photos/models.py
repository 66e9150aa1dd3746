from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from avatarapp.faces.detect import FaceBox
from avatarapp.faces.framing import Crop, centre_crop, portrait_crop


class Photo(models.Model):
    """A user's selfie after normalising: upright, metadata stripped, re-encoded."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="photos")
    storage_key = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=40, default="image/jpeg")
    # The faces found at upload, largest first (avatarapp.faces.detect.FaceBox.to_json); the
    # first is the one the portrait is made of. Empty for photos stored before faces were found.
    faces = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"photo {self.id}"

    @property
    def face_boxes(self) -> list[FaceBox]:
        return [FaceBox.from_json(face) for face in self.faces]

    def crop(self, aspect: float = 1.0) -> Crop:
        """The part of the photo a portrait of `aspect` (width / height) is made from."""
        boxes = self.face_boxes
        if not boxes:
            return centre_crop(self.width, self.height, aspect)
        return portrait_crop(boxes[0], self.width, self.height, aspect)
