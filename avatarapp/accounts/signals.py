"""Keep the bearer-token cache (accounts/tokens.py) honest."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from avatarapp.accounts.models import ApiToken, User
from avatarapp.accounts.tokens import forget_token, forget_tokens_of


@receiver(post_delete, sender=ApiToken)
def token_deleted(sender: type[ApiToken], instance: ApiToken, **kwargs: Any) -> None:
    forget_token(instance.key_hash)


@receiver(post_save, sender=User)
def user_saved(sender: type[User], instance: User, **kwargs: Any) -> None:
    forget_tokens_of(instance.pk)
