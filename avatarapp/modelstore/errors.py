"""The one error type of the model store: its message is shown to the operator as it is."""

from __future__ import annotations


class ModelStoreError(Exception):
    """A model that cannot be fetched, imported, exported or recognised; the message says what to do."""
