"""Text messages (password-reset codes), through a backend the operator chooses.

AVATAR_SMS_BACKEND names a class with `send(to, text)`; Chhavi ships a console backend
for development (the message goes to the log) and an in-memory one for tests. An operator
plugs their provider (an Indian SMS gateway, Twilio, …) by writing a class with the same
method and naming its dotted path; no provider is contacted unless they do.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


class ConsoleSmsBackend:
    def send(self, to: str, text: str) -> None:
        log.warning("SMS to %s: %s", to, text)


class LocmemSmsBackend:
    """Keeps messages in `outbox`, as Django's locmem email backend does."""

    outbox: list[tuple[str, str]] = []

    def send(self, to: str, text: str) -> None:
        LocmemSmsBackend.outbox.append((to, text))


def send_sms(to: str, text: str) -> None:
    import_string(settings.AVATAR_SMS_BACKEND)().send(to, text)
