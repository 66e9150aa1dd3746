"""Keep the bearer-token cache (avatarapp/api/auth.py) honest."""

from __future__ import annotations

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from avatarapp.accounts.models import ApiToken, User


def forget_tokens_of(user_id) -> None:
    from avatarapp.api.auth import token_cache_key

    hashes = ApiToken.objects.filter(user_id=user_id).values_list("key_hash", flat=True)
    cache.delete_many([token_cache_key(h) for h in hashes])


@receiver(post_delete, sender=ApiToken)
def token_deleted(sender, instance: ApiToken, **kwargs) -> None:
    from avatarapp.api.auth import token_cache_key

    cache.delete(token_cache_key(instance.key_hash))


@receiver(post_save, sender=User)
def user_saved(sender, instance: User, **kwargs) -> None:
    forget_tokens_of(instance.pk)
