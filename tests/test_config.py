"""Configuration fails at start, naming the variable: each rule through a fresh process.

Settings are read once per process, so every case starts `python -c "django.setup()"`
(or `manage.py check`) with one bad variable and looks at its exit status and stderr.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = "import django; django.setup(); from django.conf import settings; print(repr(settings.{name}))"
# Variables that would point the child at the test run's database, broker or files.
SHARED = ("DATABASE_URL", "REDIS_URL", "DATABASE_URL_FILE", "REDIS_URL_FILE", "SECRET_KEY", "SECRET_KEY_FILE",
          "AVATAR_MEDIA_ROOT", "AVATAR_BROKER_DIR", "AVATAR_BEAT_SCHEDULE", "AVATAR_TEST_SQLITE", "DEBUG")


def fresh_clone_env(var_dir: Path) -> dict[str, str]:
    """The environment of a fresh clone: nothing set, everything under a scratch var/ folder."""
    clean = {k: v for k, v in os.environ.items() if k not in SHARED}
    return {**clean, "DJANGO_SETTINGS_MODULE": "avatarapp.settings", "AVATAR_VAR_DIR": str(var_dir)}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return fresh_clone_env(tmp_path / "var")


def start(env: dict[str, str], show: str = "DEBUG", **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SETUP.format(name=show)], cwd=ROOT, env={**env, **variables},
                          capture_output=True, text=True, timeout=60)


def assert_refused(result: subprocess.CompletedProcess, *names: str) -> None:
    assert result.returncode != 0, result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr[-2000:]
    for name in names:
        assert name in last_line, last_line


@pytest.mark.parametrize("name, value, allowed", [
    ("AVATAR_DEVICE", "gpu", "'auto', 'cuda', 'mps', 'cpu'"),
    ("AVATAR_DTYPE", "float16", "'auto', 'fp32', 'fp16', 'bf16'"),
    ("AVATAR_LORA_MODE", "hotswap", "'auto', 'active', 'fused'"),
    ("AVATAR_BASE_FAMILY", "sd21", "'auto', 'demo', 'sd15', 'sdxl'"),
    ("AVATAR_LABEL_POSITION", "centre", "'bottom-right', 'bottom-left', 'top-right', 'top-left'"),
    ("LOG_LEVEL", "info", "'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'"),
    ("DEBUG", "yes", "'True' or 'False'"),
    ("AVATAR_LABEL", "1", "'True' or 'False'"),
])
def test_it_refuses_a_value_outside_the_allowed_set_and_lists_them(env, name, value, allowed):
    assert_refused(start(env, **{name: value}), f"{name}={value}", allowed)


@pytest.mark.parametrize("name, value, expected", [
    ("AVATAR_MAX_BATCH", "0", "from 1 to 64"),
    ("AVATAR_MAX_BATCH", "four", "whole number"),
    ("AVATAR_HARD_TIME_LIMIT", "0", "from 10 to 86400"),
    ("AVATAR_MAX_ATTEMPTS", "-1", "from 1 to 100"),
    ("AVATAR_DAILY_QUOTA", "-5", "from 0 to"),
    ("AVATAR_PHOTO_TTL_HOURS", "1.5", "whole number"),
    ("AVATAR_WORKER_STALE_AFTER", "1", "from 3 to 3600"),
    ("AVATAR_WORKER_START_TIMEOUT", "0", "from 5 to 7200"),
    ("PORT", "70000", "from 1 to 65535"),
    ("AVATAR_PROGRESS_INTERVAL", "-0.5", "from 0.0 to 60.0"),
    ("AVATAR_LABEL_SCALE", "nan", "from 0.005 to 0.5"),
    ("AVATAR_REAPER_INTERVAL", "inf", "from 1.0 to 3600.0"),
])
def test_it_refuses_numbers_out_of_range(env, name, value, expected):
    assert_refused(start(env, **{name: value}), f"{name}={value}", expected)


def test_it_refuses_limits_that_contradict_each_other(env):
    assert_refused(start(env, AVATAR_SOFT_TIME_LIMIT="900"), "AVATAR_SOFT_TIME_LIMIT=900", "AVATAR_HARD_TIME_LIMIT=900")
    assert_refused(start(env, AVATAR_MIN_SIDE="512", AVATAR_STORED_MAX_SIDE="300"),
                   "AVATAR_STORED_MAX_SIDE=300", "AVATAR_MIN_SIDE=512")


def test_it_refuses_urls_it_cannot_use_without_printing_their_passwords(env):
    for name, url in [("DATABASE_URL", "mongodb://app:hunter2@db/chhavi"), ("REDIS_URL", "http://:hunter2@cache:6379")]:
        result = start(env, **{name: url})
        assert_refused(result, name)
        assert "hunter2" not in result.stderr
    assert_refused(start(env, SITE_URL="chhavi.example.in"), "SITE_URL=chhavi.example.in", "http")


def test_empty_values_mean_the_default(env):
    result = start(env, show="AVATAR_DEVICE", AVATAR_DEVICE="", AVATAR_MAX_BATCH="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "'auto'"


# --- Secrets and NAME_FILE --------------------------------------------------------


def test_a_secret_can_come_from_a_file(env, tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 50 + "\n")
    result = start(env, show="SECRET_KEY", SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr("k" * 50)


def test_a_missing_or_unreadable_secret_file_is_named(env, tmp_path):
    assert_refused(start(env, SECRET_KEY_FILE=str(tmp_path / "nowhere")), "SECRET_KEY_FILE=", "No such file")
    assert_refused(start(env, DATABASE_URL_FILE=str(tmp_path)), "DATABASE_URL_FILE=", "Is a directory")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert_refused(start(env, REDIS_URL_FILE=str(empty)), "REDIS_URL_FILE=", "empty")


def test_a_secret_set_twice_is_refused(env, tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 50)
    assert_refused(start(env, SECRET_KEY="s" * 50, SECRET_KEY_FILE=str(key_file)), "SECRET_KEY", "SECRET_KEY_FILE")


def test_only_secrets_are_read_from_files(env, tmp_path):
    value_file = tmp_path / "device"
    value_file.write_text("cpu")
    assert_refused(start(env, AVATAR_DEVICE_FILE=str(value_file)), "AVATAR_DEVICE_FILE", "only secrets")


# --- SECRET_KEY -----------------------------------------------------------------------


def test_without_secret_key_a_fresh_clone_gets_its_own_kept_in_var(env):
    first = start(env, show="SECRET_KEY")
    assert first.returncode == 0, first.stderr
    key_file = Path(env["AVATAR_VAR_DIR"]) / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= 50
    assert first.stdout.strip() == repr(key_file.read_text().strip())
    # The web server and the worker, started apart, sign with the same key.
    assert start(env, show="SECRET_KEY").stdout == first.stdout


def test_the_published_development_key_and_short_keys_are_refused_while_debug_is_off(env):
    old_dev_key = "dev-only-insecure-key-change-me-in-production"
    assert_refused(start(env, SECRET_KEY=old_dev_key), "SECRET_KEY", "DEBUG")
    assert_refused(start(env, SECRET_KEY="CHANGE_ME"), "SECRET_KEY", "32 characters")
    assert start(env, SECRET_KEY=old_dev_key, DEBUG="True").returncode == 0


def test_manage_py_stops_with_the_message_too(env):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env={**env, "AVATAR_MAX_BATCH": "0"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "AVATAR_MAX_BATCH=0" in result.stderr


def test_the_settings_choices_are_what_the_worker_can_do():
    from django.conf import settings

    from worker.engine import DTYPES
    from worker.provenance.label import POSITIONS

    assert settings.AVATAR_LABEL_POSITIONS == POSITIONS
    assert set(settings.AVATAR_DTYPES) == {"auto", *DTYPES}


def test_no_module_reads_the_environment_outside_settings():
    """Configuration has one door: avatarapp/settings.py (through avatarapp/env.py)."""
    allowed = {ROOT / "avatarapp" / "env.py", ROOT / "avatarapp" / "settings.py"}
    readers = [
        str(path.relative_to(ROOT))
        for folder in ("avatarapp", "worker")
        for path in (ROOT / folder).rglob("*.py")
        if path not in allowed and ("os.getenv" in path.read_text() or "os.environ.get" in path.read_text()
                                    or "os.environ[" in path.read_text())
    ]
    assert readers == []
