"""Password checks (settings.AUTH_PASSWORD_VALIDATORS): Django's, speaking this project's languages.

Django translates its validators' messages for few of the site's twelve languages (Marathi and
Malayalam, of these), so each is subclassed here with a message from this project's catalogue;
what is checked stays Django's. One check is added: a password of a few repeated characters
("        ", "abababab") passes Django's list but is no better than a short one.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation as django_validators
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


class MinimumLengthValidator(django_validators.MinimumLengthValidator):
    def get_error_message(self) -> str:
        return _("Use at least %(min_length)d characters.") % {"min_length": self.min_length}


class CommonPasswordValidator(django_validators.CommonPasswordValidator):
    def get_error_message(self) -> str:
        return _("This password is too common. Choose one that is harder to guess.")


class NumericPasswordValidator(django_validators.NumericPasswordValidator):
    def get_error_message(self) -> str:
        return _("This password has only digits. Add letters or other characters.")


class UserAttributeSimilarityValidator(django_validators.UserAttributeSimilarityValidator):
    def get_error_message(self) -> str:
        return _("This password is too close to your email address or phone number.")


class VarietyValidator:
    """At least `min_distinct` different characters (spaces count as one)."""

    def __init__(self, min_distinct: int = 4) -> None:
        self.min_distinct = min_distinct

    def validate(self, password: str, user: Any = None) -> None:
        if len(set(password)) < self.min_distinct:
            raise ValidationError(self.get_error_message(), code="password_too_repetitive")

    def get_error_message(self) -> str:
        return _("This password repeats too few characters. Mix in some others.")

    def get_help_text(self) -> str:
        return _("Your password must mix at least %(count)d different characters.") % {"count": self.min_distinct}
