from __future__ import annotations

from django.db import models
from django.utils.translation import get_language


class StylePack(models.Model):
    """A style pack registered from its folder under AVATAR_PACKS_DIR.

    The manifest on disk is the source; this row mirrors what the web side needs
    (names, descriptions, generation defaults) so it never reads pack folders
    on a request.
    """

    slug = models.SlugField(unique=True)
    version = models.CharField(max_length=40)
    base_family = models.CharField(max_length=20)
    names = models.JSONField(default=dict)
    descriptions = models.JSONField(default=dict)
    manifest = models.JSONField(default=dict)
    preview_key = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.slug

    def _localised(self, texts: dict) -> str:
        lang = (get_language() or "en").split("-")[0]
        return texts.get(lang) or texts.get("en") or self.slug

    @property
    def name(self) -> str:
        return self._localised(self.names)

    @property
    def description(self) -> str:
        return self._localised(self.descriptions)

    @property
    def width(self) -> int:
        return int(self.manifest.get("width", 512))

    @property
    def height(self) -> int:
        return int(self.manifest.get("height", 512))

    @property
    def steps(self) -> int:
        return int(self.manifest.get("steps", 20))
