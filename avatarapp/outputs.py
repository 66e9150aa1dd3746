"""Removing a generated picture: its row, its files, its share links and card."""

from __future__ import annotations

from django.core.files.storage import default_storage

from avatarapp.jobs.models import Output
from avatarapp.sharing.cards import card_key


def do_delete_output(output: Output) -> None:
    keys = [output.storage_key, output.thumbnail_key, card_key(output)]
    output.delete()  # cascades to its share links
    for key in keys:
        default_storage.delete(key)
