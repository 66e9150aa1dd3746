"""Strict readers for configuration from the environment.

Each helper fails loudly on a value it cannot understand, naming the variable and
what it accepts, so a typo in a deployment stops the process at start-up instead
of showing up later as odd behaviour. An empty value counts as unset (compose files
often pass ``NAME=`` through), so the default applies.

Only secrets (``envsecret``) accept a ``NAME_FILE`` variant that points at a file,
the way container secrets are mounted; for anything else a ``NAME_FILE`` is refused
rather than silently ignored.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def _raw(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    value = os.getenv(name)
    return value if value else None


def _refuse_file_variant(name: str) -> None:
    if _raw(f"{name}_FILE") is not None:
        raise ImproperlyConfigured(
            f"{name}_FILE is set, but only secrets can be read from a file; set {name} itself instead"
        )


def envstr(name: str, default: str = "") -> str:
    _refuse_file_variant(name)
    value = _raw(name)
    return default if value is None else value


def envsecret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file NAME_FILE names (docker / Kubernetes secrets)."""
    value, file_path = _raw(name), _raw(f"{name}_FILE")
    if value is not None and file_path is not None:
        raise ImproperlyConfigured(f"Both {name} and {name}_FILE are set; set only one of them")
    if file_path is None:
        return default if value is None else value
    try:
        with open(file_path, encoding="utf-8") as f:
            secret = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ImproperlyConfigured(f"Cannot read {name}_FILE={file_path}: {reason}") from None
    if not secret:
        raise ImproperlyConfigured(f"{name}_FILE={file_path} is empty")
    return secret


def envbool(name: str, default: str) -> bool:
    _refuse_file_variant(name)
    value = os.getenv(name, default)
    if value not in ("", "True", "False"):
        raise ImproperlyConfigured(f"Unexpected value {name}={value}, use 'True' or 'False'")
    return value == "True"


def envchoice(name: str, default: str, choices: Sequence[str]) -> str:
    """One of a fixed set of values, spelled exactly as listed."""
    _refuse_file_variant(name)
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ImproperlyConfigured(f"Unexpected value {name}={value}, use one of {allowed}")
    return value


def _range_text(min: float | None, max: float | None) -> str:
    if min is not None and max is not None:
        return f" from {min} to {max}"
    if min is not None:
        return f" of at least {min}"
    if max is not None:
        return f" of at most {max}"
    return ""


def envint(name: str, default: int, *, min: int | None = None, max: int | None = None) -> int:
    """A whole number, within [min, max] when they are given."""
    _refuse_file_variant(name)
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or (min is not None and number < min) or (max is not None and number > max):
        raise ImproperlyConfigured(f"Unexpected value {name}={value}, use a whole number{_range_text(min, max)}")
    return number


def envfloat(name: str, default: float, *, min: float | None = None, max: float | None = None) -> float:
    """A number, within [min, max] when they are given."""
    _refuse_file_variant(name)
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = None
    # NaN compares false with everything, so it would slip through the range check.
    if number is None or number != number or number in (float("inf"), float("-inf")) \
            or (min is not None and number < min) or (max is not None and number > max):
        raise ImproperlyConfigured(f"Unexpected value {name}={value}, use a number{_range_text(min, max)}")
    return number


def stored_secret(name: str, path: Path) -> str:
    """A random secret kept in `path` (mode 0600), made on first use, for when `name` is unset.

    Written to a temporary file and linked into place, so two processes starting at once
    (the web server and a worker) both end up with the one that got there first.
    """
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_urlsafe(50) + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        except OSError as e:
            raise ImproperlyConfigured(
                f"{name} is not set and {path} cannot be created ({e.strerror}); set {name} or {name}_FILE"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ImproperlyConfigured(f"{name} is not set and {path} cannot be read ({e.strerror})") from None
    if not secret:
        raise ImproperlyConfigured(f"{name} is not set and {path} is empty; delete it to have a new one made")
    return secret


def foreign(name: str) -> str:
    """A variable another library owns (huggingface_hub's HF_ENDPOINT, HF_HUB_OFFLINE), read when it is
    used rather than once at start: that library reads it itself, and Chhavi must agree with it."""
    return os.environ.get(name, "")
