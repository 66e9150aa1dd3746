"""Settings for Chhavi, read from the environment (see README, "Configuration").

Without DATABASE_URL / REDIS_URL everything runs on embedded defaults under
``var/``: SQLite, files on disk and kombu's filesystem broker, so ``make run``
needs no server. With them it uses PostgreSQL and Redis.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from avatarapp import languages
from avatarapp.env import envbool, envchoice, envfloat, envint, envsecret, envstr, stored_secret

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("AVATAR_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", "False")
# Without SECRET_KEY (a fresh clone, `make run`, `make test`) a random key is made once
# and kept in var/secret_key, as self-hosted apps do: every process on this machine
# shares it, and no well-known key ever signs a session. A deployment with several
# machines sets SECRET_KEY (or SECRET_KEY_FILE) so they all agree.
SECRET_KEY = envsecret("SECRET_KEY") or stored_secret("SECRET_KEY", VAR_DIR / "secret_key")
# The key this project once shipped as its default: published, so it signs nothing real.
OLD_DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production"
if not DEBUG and (SECRET_KEY == OLD_DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY is the published development key or shorter than 32 characters, which is "
        "refused while DEBUG is off; set SECRET_KEY (or SECRET_KEY_FILE) to a long random value, "
        "or leave it unset to have one generated in var/secret_key"
    )
ALLOWED_HOSTS = [h for h in envstr("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
# Absolute base of links that leave the site (share pages, preview cards).
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
if urlsplit(SITE_URL).scheme not in ("http", "https") or not urlsplit(SITE_URL).netloc:
    raise ImproperlyConfigured(f"Unexpected value SITE_URL={SITE_URL}, use an absolute http:// or https:// URL")
# The port `manage.py serve` (`make run`) listens on, on 127.0.0.1.
PORT = envint("PORT", 8000, min=1, max=65535)
CSRF_TRUSTED_ORIGINS = [SITE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",  # django-csp: its system checks (the middleware below sends the header)
    "avatarapp.accounts",
    "avatarapp.photos",
    "avatarapp.packs",
    "avatarapp.jobs",
    "avatarapp.sharing",
    "avatarapp.front",
    "avatarapp.ops",
    "avatarapp.training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise, so static files go without; every page, API answer and error gets them.
    "csp.middleware.CSPMiddleware",
    "avatarapp.lib.headers.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "avatarapp.front.middleware.NoticeLanguageFallbackMiddleware",
    # Bad input (NUL, invalid text, bodies over Django's limits) is a localised 4xx before any view.
    "avatarapp.front.middleware.RequestGuardMiddleware",
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
                "avatarapp.front.middleware.language_choices",
                "avatarapp.front.middleware.operator_notices",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
try:
    DATABASES = {
        "default": dj_database_url.parse(
            envsecret("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
        )
    }
except ValueError as e:
    # The message names the scheme, never the URL: it may hold a password.
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL this app can use: {e}") from None
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
REDIS_URL = envsecret("REDIS_URL")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
# A Redis that is down, or hung (stopped, a half-open connection), must fail a call within this
# many seconds rather than hold a request: the token cache then reads the database, rate limits
# let the request through, a new job answers 503, and /readyz says why (README, "When Redis goes away").
REDIS_SOCKET_TIMEOUT = 0.5
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Passed to redis-py's connection pool (no retries there: the callers fall back).
            "OPTIONS": {"socket_connect_timeout": REDIS_SOCKET_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT},
        }
    }
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
CELERY_TASK_SOFT_TIME_LIMIT = envint("AVATAR_SOFT_TIME_LIMIT", 600, min=5, max=86400)
CELERY_TASK_TIME_LIMIT = envint("AVATAR_HARD_TIME_LIMIT", 900, min=10, max=86400)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    # The soft limit is what lets a job fail cleanly (row marked, files removed) before the hard kill.
    raise ImproperlyConfigured(
        f"AVATAR_SOFT_TIME_LIMIT={CELERY_TASK_SOFT_TIME_LIMIT} must be less than "
        f"AVATAR_HARD_TIME_LIMIT={CELERY_TASK_TIME_LIMIT}"
    )
CELERY_BROKER_TRANSPORT_OPTIONS: dict = (
    {
        # The hard time limit plus a margin: Redis re-delivers an unacknowledged
        # message only after this, so it must outlast the longest legitimate job.
        "visibility_timeout": CELERY_TASK_TIME_LIMIT + 300,
        # A hung Redis fails a publish (or /readyz's probe) instead of waiting forever; a worker
        # reads its BRPOP replies when they arrive, so this does not cut its long polls short.
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
    }
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
# Generation jobs are sent to their model family's queue, gpu.<family> (avatarapp.celery).
CELERY_TASK_ROUTES = {
    "worker.tasks.reap_stale_jobs": {"queue": "maintenance"},
    "worker.tasks.sweep_retention": {"queue": "maintenance"},
}
# Training chunks are sent to their model family's queue, train.<family> (avatarapp.celery);
# this route only catches a chunk sent without one.
CELERY_TASK_ROUTES["worker.tasks.train_chunk"] = {"queue": "train"}
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_BEAT_SCHEDULE_FILENAME = envstr("AVATAR_BEAT_SCHEDULE", str(VAR_DIR / "celerybeat-schedule"))
# The reaper re-queues or fails jobs whose worker died, and re-sends messages a broker lost.
AVATAR_REAPER_INTERVAL = envfloat("AVATAR_REAPER_INTERVAL", 30.0, min=1.0, max=3600.0)
# Retention: expired photos, expired share links and their cards, and files no row owns are
# deleted every AVATAR_RETENTION_INTERVAL seconds (the consent text quotes this interval).
AVATAR_RETENTION_INTERVAL = envfloat("AVATAR_RETENTION_INTERVAL", 600.0, min=1.0, max=3600.0)
# A file with no row is only swept once this old: an upload in flight writes its file first.
AVATAR_ORPHAN_GRACE_MINUTES = envint("AVATAR_ORPHAN_GRACE_MINUTES", 60, min=0, max=7 * 24 * 60)
CELERY_BEAT_SCHEDULE = {
    "reap-stale-jobs": {
        "task": "worker.tasks.reap_stale_jobs",
        "schedule": AVATAR_REAPER_INTERVAL,
        "options": {"expires": AVATAR_REAPER_INTERVAL},
    },
    "sweep-retention": {
        "task": "worker.tasks.sweep_retention",
        "schedule": AVATAR_RETENTION_INTERVAL,
        "options": {"expires": AVATAR_RETENTION_INTERVAL},
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
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Sending a job's id: one retry on a fresh connection (a pooled one may be dead after a Redis
# restart), then give up, so that with the broker unreachable POST /api/v1/jobs answers
# 503 queue_unavailable within a second or two and leaves no row behind (actions/jobs.py).
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A pool process loads the base model, every pack and runs a warm-up before it takes
# work. Celery kills a pool process it started again (after a crash) that is not up
# within this, 4 s by default, which a real SD1.5 or SDXL model on a cold disk never is,
# and then starts another, forever. The worker also gives its first ones this long.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = envint("AVATAR_WORKER_START_TIMEOUT", 900, min=5, max=7200)

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
            "access_key": envsecret("AWS_ACCESS_KEY_ID") or None,
            "secret_key": envsecret("AWS_SECRET_ACCESS_KEY") or None,
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
# Twelve languages for the whole site, plus the rest of the Eighth Schedule for the privacy
# notice and its pages (see avatarapp/languages.py).
LANGUAGES = languages.ALL_LANGUAGES
LANGUAGES_BIDI = languages.RIGHT_TO_LEFT
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "chhavi_lang"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
USE_I18N = True
USE_TZ = True
TIME_ZONE = "Asia/Kolkata"

languages.register_missing()  # Django's LANG_INFO lacks most scheduled languages

# --- Sessions and security --------------------------------------------------
# A site whose SITE_URL is https:// is served over HTTPS only: its cookies never travel over
# plain HTTP, a plain-HTTP request is redirected, and browsers are told (HSTS) to use nothing
# else. `manage.py check --deploy` then reports nothing (a test runs it with production settings).
HTTPS = SITE_URL.startswith("https://")
SESSION_COOKIE_AGE = 90 * 24 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
LANGUAGE_COOKIE_SECURE = HTTPS
LANGUAGE_COOKIE_HTTPONLY = True  # read by the server only
# Lax on every cookie: sent when someone follows a link to the site, never with a cross-site
# POST or an embedded request. Django's messages cookie takes the session cookie's flags.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "avatarapp.front.views.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", str(HTTPS))
# Health probes (Kubernetes, Docker) speak plain HTTP to the process itself, past the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# One year, this host and its subdomains, preload-ready (the preload list itself needs the
# apex domain submitted by hand at hstspreload.org). 0 turns HSTS off.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0, min=0, max=2 * 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "True")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "True")
# Behind a reverse proxy that ends TLS, the header it sets to "https" on HTTPS requests (e.g.
# X-Forwarded-Proto). Only when the proxy always sets or overwrites it: a client could send it.
AVATAR_PROXY_SSL_HEADER = envstr("AVATAR_PROXY_SSL_HEADER")
if AVATAR_PROXY_SSL_HEADER and not (AVATAR_PROXY_SSL_HEADER.isascii()
                                    and AVATAR_PROXY_SSL_HEADER.replace("-", "").isalnum()):
    raise ImproperlyConfigured(
        f"Unexpected value AVATAR_PROXY_SSL_HEADER={AVATAR_PROXY_SSL_HEADER}, use a header name such as "
        "X-Forwarded-Proto (letters, digits and '-')"
    )
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + AVATAR_PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if AVATAR_PROXY_SSL_HEADER else None
)
# Content-Security-Policy (django-csp): nothing inline, nothing from another host. The pages keep
# every script and style in static/ (a test scans the templates); Django's admin needs nothing more.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],  # blob: the photo's preview before upload
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "connect-src": ["'self'"],
        "manifest-src": ["'self'"],
        "worker-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}
# Permissions-Policy (avatarapp/lib/headers.py): no page needs these features. The upload page's
# <input capture> opens the phone's camera app, which needs no permission; Web Share and the
# clipboard keep their default (this site only).
AVATAR_PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: [] for feature in (
        "accelerometer", "autoplay", "browsing-topics", "camera", "display-capture", "geolocation",
        "gyroscope", "hid", "magnetometer", "microphone", "midi", "payment", "serial", "usb",
    )
}

# --- Chhavi -------------------------------------------------------------------
# Every setting with a fixed set of values is checked here, at start-up, so a typo
# (AVATAR_DTYPE=float16) stops the process with a message instead of failing each job.
AVATAR_BASE_FAMILIES = ("auto", "demo", "sd15", "sdxl")
AVATAR_DEVICES = ("auto", "cuda", "mps", "cpu")
AVATAR_DTYPES = ("auto", "fp32", "fp16", "bf16")
AVATAR_LORA_MODES = ("auto", "active", "fused")
# The corners worker/provenance/label.py can draw the label in (a test keeps the two equal).
AVATAR_LABEL_POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

AVATAR_BASE_MODEL = envstr("AVATAR_BASE_MODEL", str(VAR_DIR / "models" / "demo"))
AVATAR_BASE_FAMILY = envchoice("AVATAR_BASE_FAMILY", "auto", AVATAR_BASE_FAMILIES)
# A local diffusers folder with the configs for a single-file checkpoint.
AVATAR_BASE_CONFIG = envstr("AVATAR_BASE_CONFIG")
# Where fetch_model and import_model install models (one folder each, see avatarapp/modelstore),
# the catalogue fetch_model reads, and how long a download waits to connect or for the next bytes (s).
AVATAR_MODELS_DIR = Path(envstr("AVATAR_MODELS_DIR", str(VAR_DIR / "models")))
AVATAR_MODEL_CATALOGUE = Path(envstr("AVATAR_MODEL_CATALOGUE",
                                     str(BASE_DIR / "avatarapp" / "modelstore" / "catalogue.toml")))
AVATAR_DOWNLOAD_TIMEOUT = envfloat("AVATAR_DOWNLOAD_TIMEOUT", 30.0, min=1.0, max=600.0)
# The zero-shot identity adapter (IP-Adapter with a CLIP image encoder): a folder laid out as
# avatarapp/modelstore/identity.py describes, or the name of one installed under AVATAR_MODELS_DIR
# (`fetch_model ip-adapter-plus-face-sd15`). Empty = off; packs with identity_strength > 0 are refused.
AVATAR_IDENTITY_ADAPTER = envstr("AVATAR_IDENTITY_ADAPTER")
AVATAR_PACKS_DIR = Path(envstr("AVATAR_PACKS_DIR", str(VAR_DIR / "packs")))
# The packs that come with Chhavi, made for real SD1.5 and SDXL models; `register_packs`
# copies them into AVATAR_PACKS_DIR.
AVATAR_SHIPPED_PACKS_DIR = BASE_DIR / "packs"
AVATAR_DEVICE = envchoice("AVATAR_DEVICE", "auto", AVATAR_DEVICES)
AVATAR_DTYPE = envchoice("AVATAR_DTYPE", "auto", AVATAR_DTYPES)
AVATAR_LORA_MODE = envchoice("AVATAR_LORA_MODE", "auto", AVATAR_LORA_MODES)
AVATAR_COMPILE = envbool("AVATAR_COMPILE", "False")  # torch.compile the UNet (packs then hotswap)
AVATAR_MAX_LORA_RANK = envint("AVATAR_MAX_LORA_RANK", 64, min=1, max=1024)  # hotswap slot size in compile mode
# CPU threads for torch in a worker.
AVATAR_TORCH_THREADS = envint("AVATAR_TORCH_THREADS", os.cpu_count() or 1, min=1, max=1024)
# Caps on what any pack asks for, for CPU-only or small-GPU servers (0 = no cap): the steps
# of a job, and the longer side of its picture (the other side follows, to a multiple of 8).
AVATAR_MAX_STEPS = envint("AVATAR_MAX_STEPS", 0, min=0, max=150)
AVATAR_MAX_SIDE = envint("AVATAR_MAX_SIDE", 0, min=0, max=2048)
AVATAR_MAX_BATCH = envint("AVATAR_MAX_BATCH", 4, min=1, max=64)  # pictures per denoising batch
AVATAR_HEARTBEAT_TIMEOUT = envint("AVATAR_HEARTBEAT_TIMEOUT", 120, min=1, max=86400)
AVATAR_REQUEUE_AFTER = envint("AVATAR_REQUEUE_AFTER", 300, min=1, max=86400)
AVATAR_CONSENT_VERSION = envint("AVATAR_CONSENT_VERSION", 1, min=1, max=1_000_000)
AVATAR_MAX_UPLOAD_BYTES = envint("AVATAR_MAX_UPLOAD_BYTES", 15 * 1024 * 1024, min=1024, max=200 * 1024 * 1024)
AVATAR_MAX_PIXELS = envint("AVATAR_MAX_PIXELS", 40_000_000, min=65_536, max=500_000_000)
AVATAR_MIN_SIDE = envint("AVATAR_MIN_SIDE", 256, min=32, max=4096)
# The smallest face (its detector box's shorter side, in the stored photo's pixels) a portrait is made from.
AVATAR_MIN_FACE_SIDE = envint("AVATAR_MIN_FACE_SIDE", 64, min=16, max=1024)
# A generated face drawn lighter than the selfie's by more than this (Individual Typology Angle,
# degrees; worker/faces.py) counts as skin lightening and ranks last (worker/ranking.py). The
# same photo resized or re-encoded moves it by under 3 degrees; a change of light or colour grade, more.
AVATAR_SKIN_LIGHTENING_MAX = envfloat("AVATAR_SKIN_LIGHTENING_MAX", 10.0, min=2.0, max=90.0)
AVATAR_STORED_MAX_SIDE = envint("AVATAR_STORED_MAX_SIDE", 2048, min=256, max=16384)
if AVATAR_STORED_MAX_SIDE < AVATAR_MIN_SIDE:
    raise ImproperlyConfigured(
        f"AVATAR_STORED_MAX_SIDE={AVATAR_STORED_MAX_SIDE} must not be less than AVATAR_MIN_SIDE={AVATAR_MIN_SIDE}"
    )
AVATAR_PHOTO_TTL_HOURS = envint("AVATAR_PHOTO_TTL_HOURS", 24, min=1, max=24 * 365)
# Pictures a day; 0 is allowed and turns generation off for that kind of account.
AVATAR_DAILY_QUOTA = envint("AVATAR_DAILY_QUOTA", 40, min=0, max=1_000_000)
AVATAR_GUEST_DAILY_QUOTA = envint("AVATAR_GUEST_DAILY_QUOTA", 12, min=0, max=1_000_000)
# Jobs one user may have queued or running at once; more answer 429 too_many_jobs.
AVATAR_MAX_ACTIVE_JOBS = envint("AVATAR_MAX_ACTIVE_JOBS", 6, min=1, max=1_000_000)
AVATAR_RATE_GUESTS_PER_HOUR = envint("AVATAR_RATE_GUESTS_PER_HOUR", 30, min=1, max=1_000_000)
AVATAR_RATE_LOGINS_PER_HOUR = envint("AVATAR_RATE_LOGINS_PER_HOUR", 20, min=1, max=1_000_000)
AVATAR_RATE_UPLOADS_PER_HOUR = envint("AVATAR_RATE_UPLOADS_PER_HOUR", 60, min=1, max=1_000_000)
# Accounts that resist attack (README, "Accounts"). Per client (address): registrations, failed
# sign-ins on any account, password-reset requests. Per account: failed sign-ins from anywhere
# (a soft limit: past it each client gets only a few tries on that account, a correct password from
# a client that has not failed is still let in) and reset messages sent (past it, no new message).
# AVATAR_RATE_LOGINS_PER_HOUR is failed sign-ins per (client, account); the defaults follow it and
# AVATAR_RATE_GUESTS_PER_HOUR, so one knob scales each family.
AVATAR_RATE_REGISTRATIONS_PER_HOUR = envint("AVATAR_RATE_REGISTRATIONS_PER_HOUR",
                                            max(1, AVATAR_RATE_GUESTS_PER_HOUR // 3), min=1, max=1_000_000)
AVATAR_RATE_CLIENT_LOGIN_FAILURES_PER_HOUR = envint("AVATAR_RATE_CLIENT_LOGIN_FAILURES_PER_HOUR",
                                                    5 * AVATAR_RATE_LOGINS_PER_HOUR, min=1, max=5_000_000)
AVATAR_RATE_ACCOUNT_LOGIN_FAILURES_PER_HOUR = envint("AVATAR_RATE_ACCOUNT_LOGIN_FAILURES_PER_HOUR",
                                                     5 * AVATAR_RATE_LOGINS_PER_HOUR, min=1, max=5_000_000)
AVATAR_RATE_RESETS_PER_HOUR = envint("AVATAR_RATE_RESETS_PER_HOUR",
                                     max(1, AVATAR_RATE_LOGINS_PER_HOUR // 2), min=1, max=1_000_000)
AVATAR_RATE_ACCOUNT_RESETS_PER_HOUR = envint("AVATAR_RATE_ACCOUNT_RESETS_PER_HOUR",
                                             max(1, AVATAR_RATE_LOGINS_PER_HOUR // 4), min=1, max=1_000_000)
# The reverse proxies in front of the web server (comma-separated addresses or CIDRs): only a
# request from one of them has its X-Forwarded-For read, for the client's address the rate limits
# count. Empty (the default): the header is ignored, REMOTE_ADDR is the client.
AVATAR_TRUSTED_PROXIES = [p.strip() for p in envstr("AVATAR_TRUSTED_PROXIES").split(",") if p.strip()]
for _proxy in AVATAR_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"Unexpected value AVATAR_TRUSTED_PROXIES={_proxy}, use comma-separated "
                                   "IP addresses or networks such as 10.0.0.0/8") from None
# An API token unused for this many days stops working (401); every use keeps it alive.
AVATAR_TOKEN_IDLE_DAYS = envint("AVATAR_TOKEN_IDLE_DAYS", 30, min=1, max=3650)
AVATAR_PROGRESS_INTERVAL = envfloat("AVATAR_PROGRESS_INTERVAL", 0.25, min=0.0, max=60.0)
AVATAR_MAX_ATTEMPTS = envint("AVATAR_MAX_ATTEMPTS", 3, min=1, max=100)
# A worker that is warm records itself (avatarapp.ops.models.WorkerStatus) and refreshes
# the record every third of this; /readyz counts only workers seen within it.
AVATAR_WORKER_STALE_AFTER = envint("AVATAR_WORKER_STALE_AFTER", 30, min=3, max=3600)
# Test hook: while this file exists, the worker holds every running job after its first
# denoising step (progress written, cancels still honoured). Tests use it to look at a job
# mid-run without racing the clock. Empty (the default) turns the hook off.
AVATAR_HOLD_FILE = envstr("AVATAR_HOLD_FILE")
# Style pack training (avatarapp/training): each run's pictures, encodings and checkpoints, on a
# disk the web side (which copies the pictures in) and the workers (which train) both reach.
AVATAR_TRAINING_DIR = Path(envstr("AVATAR_TRAINING_DIR", str(VAR_DIR / "training")))
# Likeness models (avatarapp/actions/likeness.py, worker/training/likeness.py): a LoRA of one
# person's face, trained on their own selfies after a consent of its own (versioned like the
# photo consent: raise the version when the text or the use changes).
AVATAR_LIKENESS_CONSENT_VERSION = envint("AVATAR_LIKENESS_CONSENT_VERSION", 1, min=1, max=1_000_000)
AVATAR_LIKENESS_MIN_PHOTOS = envint("AVATAR_LIKENESS_MIN_PHOTOS", 6, min=1, max=100)
AVATAR_LIKENESS_MAX_PHOTOS = envint("AVATAR_LIKENESS_MAX_PHOTOS", 20, min=AVATAR_LIKENESS_MIN_PHOTOS, max=200)
# DreamBooth's settings for a LoRA of a face (diffusers' train_dreambooth_lora.py examples: 400-1000
# steps at 1e-4, rank 4-32, a prior-preservation weight of 1.0, some 100 class pictures); on a GPU
# these take ~10-20 minutes for SD1.5. The resolution 0 means the family's own (512 for SD1.5).
AVATAR_LIKENESS_STEPS = envint("AVATAR_LIKENESS_STEPS", 800, min=1, max=100_000)
AVATAR_LIKENESS_RANK = envint("AVATAR_LIKENESS_RANK", 16, min=1, max=256)
AVATAR_LIKENESS_LEARNING_RATE = envfloat("AVATAR_LIKENESS_LEARNING_RATE", 1e-4, min=1e-7, max=1.0)
AVATAR_LIKENESS_RESOLUTION = envint("AVATAR_LIKENESS_RESOLUTION", 0, min=0, max=2048)
AVATAR_LIKENESS_CHUNK_STEPS = envint("AVATAR_LIKENESS_CHUNK_STEPS", 50, min=1, max=100_000)
AVATAR_LIKENESS_CLASS_PICTURES = envint("AVATAR_LIKENESS_CLASS_PICTURES", 100, min=1, max=1000)
AVATAR_LIKENESS_PRIOR_WEIGHT = envfloat("AVATAR_LIKENESS_PRIOR_WEIGHT", 1.0, min=0.0, max=10.0)
# How strongly a job's likeness model acts beside its style pack (the adapters' weights).
AVATAR_LIKENESS_WEIGHT = envfloat("AVATAR_LIKENESS_WEIGHT", 1.0, min=0.05, max=2.0)
# Pictures made with and without the model for its likeness report.
AVATAR_LIKENESS_REPORT_PICTURES = envint("AVATAR_LIKENESS_REPORT_PICTURES", 4, min=0, max=64)
# Likeness models one person may start a day (a model costs minutes of GPU; deleting one to start
# again counts too). 0: no limit.
AVATAR_LIKENESS_STARTS_PER_DAY = envint("AVATAR_LIKENESS_STARTS_PER_DAY", 3, min=0, max=1000)
# Likeness models a worker keeps loaded beside the packs (the least recently used one goes first).
AVATAR_LIKENESS_RESIDENT = envint("AVATAR_LIKENESS_RESIDENT", 4, min=1, max=1000)

LOG_LEVEL = envchoice("LOG_LEVEL", "INFO", LOG_LEVELS)
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
# A path, like the certificate: a mounted secret is pointed at, so no AVATAR_C2PA_KEY_FILE.
AVATAR_C2PA_KEY = envstr("AVATAR_C2PA_KEY")
AVATAR_LABEL_POSITION = envchoice("AVATAR_LABEL_POSITION", "bottom-right", AVATAR_LABEL_POSITIONS)
AVATAR_LABEL_SCALE = envfloat("AVATAR_LABEL_SCALE", 0.04, min=0.005, max=0.5)  # text size, share of the height
AVATAR_LABEL_FONT_DIRS = [Path(p) for p in envstr(
    "AVATAR_LABEL_FONT_DIRS", "/usr/share/fonts/truetype/noto:/usr/share/fonts/truetype/dejavu").split(":") if p]

# Content safety (worker/safety.py): every picture is checked before it is stored, and an unsafe one
# is stored blurred and flagged. AVATAR_SAFETY_CHECKER is a local folder with the diffusers safety
# checker's weights (the operator brings them); AVATAR_SAFETY_CHECK picks the check: "off",
# "diffusers" (the default once AVATAR_SAFETY_CHECKER is set) or the dotted path of an operator's
# own worker.safety.SafetyCheck subclass. The worker checks the folder and the class at start.
AVATAR_SAFETY_CHECKER = envstr("AVATAR_SAFETY_CHECKER")
AVATAR_SAFETY_CHECK = envstr("AVATAR_SAFETY_CHECK", "diffusers" if AVATAR_SAFETY_CHECKER else "off")
if AVATAR_SAFETY_CHECK not in ("off", "diffusers") and not re.fullmatch(
        r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", AVATAR_SAFETY_CHECK):
    raise ImproperlyConfigured(f"Unexpected value AVATAR_SAFETY_CHECK={AVATAR_SAFETY_CHECK}, use 'off', "
                               "'diffusers' or the dotted path of a worker.safety.SafetyCheck subclass")
if AVATAR_SAFETY_CHECK == "diffusers" and not AVATAR_SAFETY_CHECKER:
    raise ImproperlyConfigured("AVATAR_SAFETY_CHECK=diffusers needs AVATAR_SAFETY_CHECKER, the folder holding the "
                               "safety checker's weights")

# Accounts: password-reset links go by email, codes by text message. Both backends print to the
# log by default (development); operators point them at their own mail server and SMS gateway.
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, min=1, max=65535)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "False")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Chhavi <noreply@localhost>")
AVATAR_SMS_BACKEND = envstr("AVATAR_SMS_BACKEND", "avatarapp.lib.sms.ConsoleSmsBackend")
# Every new password (registration, a guest securing the account, a reset, the admin's password
# change): Django's checks, with messages from this project's catalogue (accounts/passwords.py) so
# each site language has them, plus one for passwords of a few repeated characters.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "avatarapp.accounts.passwords.UserAttributeSimilarityValidator",
     "OPTIONS": {"user_attributes": ("email", "phone")}},
    {"NAME": "avatarapp.accounts.passwords.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "avatarapp.accounts.passwords.CommonPasswordValidator"},
    {"NAME": "avatarapp.accounts.passwords.NumericPasswordValidator"},
    {"NAME": "avatarapp.accounts.passwords.VarietyValidator"},
]
