from __future__ import annotations

from django.db import models
from django.utils.translation import get_language

from avatarapp.ops.models import live_families
from avatarapp.packs.manifest import PackSpec


class StylePackQuerySet(models.QuerySet["StylePack"]):
    def offered(self) -> StylePackQuerySet:
        """Enabled packs that some warm worker can run: a pack made for another model family
        (the demo packs beside a real SD1.5 model, say) is never offered, since its job could
        only fail."""
        return self.filter(enabled=True, base_family__in=live_families())


class StylePack(models.Model):
    """A style pack registered from its folder under AVATAR_PACKS_DIR.

    The manifest on disk is the source; this row mirrors what the web side needs
    (names, descriptions, generation defaults) so it never reads pack folders
    on a request. ``manifest`` holds ``PackSpec.to_json()``; read it through ``spec``.
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

    objects = StylePackQuerySet.as_manager()

    # The cache behind `spec`, and the manifest object it was loaded from (plain attributes, not fields).
    _spec: PackSpec | None = None
    _spec_source: object = None

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
    def has_preview(self) -> bool:
        """A preview picture exists: rendered by a worker, or shipped in the pack folder (the demo packs')."""
        return bool(self.preview_key or self.spec.preview)

    @property
    def spec(self) -> PackSpec:
        """The stored manifest JSON as a typed PackSpec, loaded once per instance.

        It is loaded again when ``manifest`` is replaced (as ``refresh_from_db`` and
        ``pack.manifest = {...}`` do); change the JSON by replacing it, not in place.
        """
        if self._spec is None or self._spec_source is not self.manifest:
            self._spec, self._spec_source = PackSpec.from_json(self.manifest), self.manifest
        return self._spec
