"""Environment for the test run, set before Django reads its settings.

Loaded with ``-p tests.env_plugin`` (pyproject's addopts) so it runs before
pytest-django configures Django. Test files, test broker folders and the test
SQLite database live under var/test/, apart from what `make run` uses; the
demo model and packs in var/ are shared (built once by `make test`).
"""

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# One folder per test run, so two runs at once (a developer's and a helper's) never share
# a database file or broker folder; folders of runs that have ended are cleared away.
TEST_ROOT = ROOT / "var" / "test"
TEST_VAR = TEST_ROOT / f"run-{os.getpid()}"


def _run_is_over(folder: Path) -> bool:
    try:
        os.kill(int(folder.name.removeprefix("run-")), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


if TEST_ROOT.is_dir():
    for old in TEST_ROOT.iterdir():
        if not old.is_dir() or _run_is_over(old):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
TEST_VAR.mkdir(parents=True, exist_ok=True)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")
os.environ["AVATAR_MEDIA_ROOT"] = str(TEST_VAR / "media")
os.environ["AVATAR_BROKER_DIR"] = str(TEST_VAR / "broker")
os.environ["AVATAR_BEAT_SCHEDULE"] = str(TEST_VAR / "celerybeat-schedule")
os.environ["AVATAR_TEST_SQLITE"] = str(TEST_VAR / "test.sqlite3")
os.environ.setdefault("SITE_URL", "http://testserver")
# Rate limits are tested on their own with small values; elsewhere they stay out of the way.
for name in ("AVATAR_RATE_GUESTS_PER_HOUR", "AVATAR_RATE_LOGINS_PER_HOUR", "AVATAR_RATE_UPLOADS_PER_HOUR"):
    os.environ[name] = "100000"
os.environ["AVATAR_PROGRESS_INTERVAL"] = "0"
# The test workers make 256-pixel pictures (the packs ask for 512): a quarter of the UNet's and
# the VAE's work, the same code path (the operator's cap, AVATAR_MAX_SIDE). Tests that look at
# the size read the cap from settings.
os.environ.setdefault("AVATAR_MAX_SIDE", "256")
if os.getenv("REDIS_URL"):
    # A Redis database of its own, so a test run never touches what `make run` queued.
    os.environ["REDIS_URL"] = urlsplit(os.environ["REDIS_URL"])._replace(path="/9").geturl()
