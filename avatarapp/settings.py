"""Settings for Chhavi, read from the environment (see README, "Configuration").

Without DATABASE_URL / REDIS_URL everything runs on embedded defaults under
``var/``: SQLite, files on disk and kombu's filesystem broker, so ``make run``
needs no server. With them it uses PostgreSQL and Redis.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

from avatarapp.env import envbool, envfloat, envint, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("AVATAR_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = envstr("SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = envbool("DEBUG", "False")
ALLOWED_HOSTS = [h for h in envstr("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
# Absolute base of links that leave the site (share pages, preview cards).
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = [SITE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "avatarapp.accounts",
    "avatarapp.photos",
    "avatarapp.packs",
    "avatarapp.jobs",
    "avatarapp.sharing",
    "avatarapp.front",
    "avatarapp.ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "avatarapp.accounts.middleware.RememberLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "avatarapp.api.errors.ApiErrorMiddleware",
]

ROOT_URLCONF = "avatarapp.urls"
WSGI_APPLICATION = "avatarapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "avatarapp" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: WAL lets readers go
    # on while one writes, IMMEDIATE takes the write lock up front so two
    # writers queue instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so a worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": envstr("AVATAR_TEST_SQLITE", str(VAR_DIR / "test.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Cache (rate limits) --------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Celery ---------------------------------------------------------------
# No result backend: the job row is where results and progress live.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
BROKER_DIR = Path(envstr("AVATAR_BROKER_DIR", str(VAR_DIR / "broker")))
if not REDIS_URL:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = (
    # The hard time limit plus a margin: Redis re-delivers an unacknowledged
    # message only after this, so it must outlast the longest legitimate job.
    {"visibility_timeout": envint("AVATAR_HARD_TIME_LIMIT", 900) + 300}
    if REDIS_URL
    else {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The filesystem transport polls; 20 ms keeps pickup well under 100 ms.
        "polling_interval": 0.02,
    }
)
CELERY_TASK_ROUTES = {
    "worker.tasks.generate_job": {"queue": "gpu"},
    "worker.tasks.reap_stale_jobs": {"queue": "maintenance"},
}
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_BEAT_SCHEDULE_FILENAME = envstr("AVATAR_BEAT_SCHEDULE", str(VAR_DIR / "celerybeat-schedule"))
# The reaper re-queues or fails jobs whose worker died, and re-sends messages a broker lost.
CELERY_BEAT_SCHEDULE = {
    "reap-stale-jobs": {
        "task": "worker.tasks.reap_stale_jobs",
        "schedule": envfloat("AVATAR_REAPER_INTERVAL", 30.0),
        "options": {"expires": envfloat("AVATAR_REAPER_INTERVAL", 30.0)},
    },
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
# A worker holds one message at a time: the next job stays in the queue, where
# another worker can take it and queue positions stay honest.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Not re-queued when the worker process dies: an out-of-memory crash would
# otherwise repeat forever. The job row counts attempts instead, and the reaper
# decides whether a job whose heartbeat stopped runs again.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_TASK_SOFT_TIME_LIMIT = envint("AVATAR_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = envint("AVATAR_HARD_TIME_LIMIT", 900)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Storage --------------------------------------------------------------
MEDIA_ROOT = Path(envstr("AVATAR_MEDIA_ROOT", str(VAR_DIR / "media")))
STATIC_ROOT = VAR_DIR / "static"
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
AWS_STORAGE_BUCKET_NAME = envstr("AWS_STORAGE_BUCKET_NAME")
if AWS_STORAGE_BUCKET_NAME:
    # Private objects, no public ACL: images are served through the app (owner
    # checks) or short-lived signed URLs, never a guessable public address.
    default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": envstr("AWS_S3_ENDPOINT_URL") or None,
            "region_name": envstr("AWS_S3_REGION_NAME") or None,
            "access_key": envstr("AWS_ACCESS_KEY_ID") or None,
            "secret_key": envstr("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 300,
            "file_overwrite": True,
        },
    }
else:
    default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Outputs go to deterministic keys; a repeated task overwrites its own file.
        "OPTIONS": {"location": str(MEDIA_ROOT), "allow_overwrite": True},
    }
STORAGES = {
    "default": default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Internationalisation ---------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("hi", "हिन्दी"),
    ("bn", "বাংলা"),
    ("mr", "मराठी"),
    ("te", "తెలుగు"),
    ("ta", "தமிழ்"),
    ("gu", "ગુજરાતી"),
    ("kn", "ಕನ್ನಡ"),
    ("ml", "മലയാളം"),
    ("pa", "ਪੰਜਾਬੀ"),
    ("or", "ଓଡ଼ିଆ"),
    ("ur", "اردو"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "chhavi_lang"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
USE_I18N = True
USE_TZ = True
TIME_ZONE = "Asia/Kolkata"

from avatarapp import languages  # noqa: E402  (registers gu and or with Django)

languages.register_missing()

# --- Sessions and security --------------------------------------------------
SESSION_COOKIE_AGE = 90 * 24 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SITE_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Chhavi -------------------------------------------------------------------
AVATAR_BASE_MODEL = envstr("AVATAR_BASE_MODEL", str(VAR_DIR / "models" / "demo"))
AVATAR_BASE_FAMILY = envstr("AVATAR_BASE_FAMILY", "auto")  # auto, sd15, sdxl
AVATAR_BASE_CONFIG = envstr("AVATAR_BASE_CONFIG")  # a local diffusers folder with the configs for a single-file checkpoint
AVATAR_PACKS_DIR = Path(envstr("AVATAR_PACKS_DIR", str(VAR_DIR / "packs")))
AVATAR_DEVICE = envstr("AVATAR_DEVICE", "auto")  # auto, cuda, mps, cpu
AVATAR_DTYPE = envstr("AVATAR_DTYPE", "auto")  # auto, fp32, fp16, bf16
AVATAR_LORA_MODE = envstr("AVATAR_LORA_MODE", "auto")  # auto, active, fused
AVATAR_COMPILE = envbool("AVATAR_COMPILE", "False")  # torch.compile the UNet (packs then hotswap)
AVATAR_MAX_LORA_RANK = envint("AVATAR_MAX_LORA_RANK", 64)  # hotswap slot size in compile mode
AVATAR_TORCH_THREADS = envint("AVATAR_TORCH_THREADS", os.cpu_count() or 1)  # CPU threads for torch in a worker
AVATAR_MAX_BATCH = envint("AVATAR_MAX_BATCH", 4)  # pictures per denoising batch
AVATAR_HEARTBEAT_TIMEOUT = envint("AVATAR_HEARTBEAT_TIMEOUT", 120)
AVATAR_REQUEUE_AFTER = envint("AVATAR_REQUEUE_AFTER", 300)
AVATAR_CONSENT_VERSION = envint("AVATAR_CONSENT_VERSION", 1)
AVATAR_MAX_UPLOAD_BYTES = envint("AVATAR_MAX_UPLOAD_BYTES", 15 * 1024 * 1024)
AVATAR_MAX_PIXELS = envint("AVATAR_MAX_PIXELS", 40_000_000)
AVATAR_MIN_SIDE = envint("AVATAR_MIN_SIDE", 256)
AVATAR_STORED_MAX_SIDE = envint("AVATAR_STORED_MAX_SIDE", 2048)
AVATAR_PHOTO_TTL_HOURS = envint("AVATAR_PHOTO_TTL_HOURS", 24)
AVATAR_DAILY_QUOTA = envint("AVATAR_DAILY_QUOTA", 40)
AVATAR_GUEST_DAILY_QUOTA = envint("AVATAR_GUEST_DAILY_QUOTA", 12)
AVATAR_RATE_GUESTS_PER_HOUR = envint("AVATAR_RATE_GUESTS_PER_HOUR", 30)
AVATAR_RATE_LOGINS_PER_HOUR = envint("AVATAR_RATE_LOGINS_PER_HOUR", 20)
AVATAR_RATE_UPLOADS_PER_HOUR = envint("AVATAR_RATE_UPLOADS_PER_HOUR", 60)
AVATAR_PROGRESS_INTERVAL = envfloat("AVATAR_PROGRESS_INTERVAL", 0.25)
AVATAR_MAX_ATTEMPTS = envint("AVATAR_MAX_ATTEMPTS", 3)
# Test hook: while this file exists, the worker holds every running job after its first
# denoising step (progress written, cancels still honoured). Tests use it to look at a job
# mid-run without racing the clock. Empty (the default) turns the hook off.
AVATAR_HOLD_FILE = envstr("AVATAR_HOLD_FILE")

LOG_LEVEL = envstr("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# Provenance: the visible "AI-generated" label, embedded metadata and watermark.
AVATAR_LABEL = envbool("AVATAR_LABEL", "True")
AVATAR_C2PA = envbool("AVATAR_C2PA", "True")  # C2PA manifest on each output (needs c2pa-python)
AVATAR_C2PA_CERT = envstr("AVATAR_C2PA_CERT")  # PEM chain, signer first; empty = a local self-signed one
AVATAR_C2PA_KEY = envstr("AVATAR_C2PA_KEY")
AVATAR_LABEL_POSITION = envstr("AVATAR_LABEL_POSITION", "bottom-right")
AVATAR_LABEL_SCALE = envfloat("AVATAR_LABEL_SCALE", 0.04)
AVATAR_LABEL_FONT_DIRS = [Path(p) for p in envstr(
    "AVATAR_LABEL_FONT_DIRS", "/usr/share/fonts/truetype/noto:/usr/share/fonts/truetype/dejavu").split(":") if p]
