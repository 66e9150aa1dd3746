from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac


class UserManager(BaseUserManager["User"]):
    def create_guest(self, language: str = "en") -> User:
        user = self.model(is_guest=True, language=language)
        user.set_unusable_password()
        user.save()
        return user

    def create_user(self, email: str | None = None, password: str | None = None, phone: str | None = None,
                    **extra: Any) -> User:
        user = self.model(email=self.normalize_email(email) or None, phone=phone or None, **extra)
        user.set_password(password)
        user.save()
        return user

    def create_superuser(self, email: str | None, password: str | None, **extra: Any) -> User:
        return self.create_user(email, password, is_staff=True, is_superuser=True, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person using Chhavi: a guest (no credentials yet) or a registered user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True, null=True, blank=True)
    phone = models.CharField(max_length=20, unique=True, null=True, blank=True)
    is_guest = models.BooleanField(default=False)
    language = models.CharField(max_length=8, default="en")
    consent_version = models.PositiveIntegerField(null=True, blank=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    # The separate consent to train a model of the person's face (avatarapp/actions/likeness.py).
    likeness_consent_version = models.PositiveIntegerField(null=True, blank=True)
    likeness_consent_at = models.DateTimeField(null=True, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Raised by "sign out everywhere": every session signed with an older value stops working.
    session_epoch = models.PositiveIntegerField(default=0)

    objects = UserManager()

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email or self.phone or f"guest {str(self.id)[:8]}"

    # Django keeps an HMAC of the password hash in each session and ends any session whose HMAC
    # no longer matches (a changed password signs out everywhere). Mixing in session_epoch lets
    # "sign out everywhere" do the same without a new password, and without reading every
    # session. At epoch 0 the HMAC is Django's own, so existing sessions live on.
    def get_session_auth_hash(self) -> str:
        return self._session_hash(None)

    def get_session_auth_fallback_hash(self) -> Iterable[str]:
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_hash(secret)

    def _session_hash(self, secret: str | bytes | None) -> str:
        if not self.session_epoch:
            return salted_hmac(SESSION_HASH_SALT, self.password, secret=secret, algorithm="sha256").hexdigest()
        return salted_hmac(SESSION_HASH_SALT, f"{self.password}:{self.session_epoch}", secret=secret,
                           algorithm="sha256").hexdigest()


# Django's own salt (AbstractBaseUser._get_session_auth_hash), so epoch 0 gives its very HMAC.
SESSION_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token. Only its hash is stored, so a database leak reveals no token.

    A token unused for AVATAR_TOKEN_IDLE_DAYS stops working; `last_used_at` is refreshed at
    most once a minute (accounts/tokens.py), so the polled status endpoint writes nothing.
    """

    key_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(default=timezone.now)

    @classmethod
    def issue(cls, user: User) -> str:
        raw = secrets.token_urlsafe(32)
        cls.objects.create(key_hash=hash_token(raw), user=user)
        return raw


class ConsentEvent(models.Model):
    """One grant or withdrawal of consent, kept as the user's consent history (DPDP s. 6).

    The user row holds only the current state; this history is what the export shows
    and what an auditor asks for. It goes when the account goes.
    """

    class Kind(models.TextChoices):
        GRANTED = "granted"
        WITHDRAWN = "withdrawn"

    class Purpose(models.TextChoices):
        PHOTOS = "photos"  # making pictures from uploaded photos
        LIKENESS = "likeness"  # training a likeness model of the person's face

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="consent_events")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.PHOTOS)
    version = models.PositiveIntegerField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.purpose} {self.kind} v{self.version} at {self.at:%Y-%m-%d %H:%M}"
