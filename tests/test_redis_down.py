"""Redis goes away and comes back: nothing answers 500 meanwhile, and service resumes by itself.

A test-owned redis-server on a spare port (never the machine's shared one) serves as the cache
and, for a fresh Celery app standing in for the web side's, as the broker; both configured
exactly as avatarapp/settings.py configures them when REDIS_URL is set (read from a settings
import in a child process with REDIS_URL pointing at this server). Redis is then either hung
(SIGSTOP: connections are accepted but nothing answers, as with a half-open connection or a
stuck server) or down (killed: refused, and its queues lost, as Redis without persistence loses
them on a restart).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import redis as redis_py
from celery import Celery
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from avatarapp import health
from avatarapp.accounts import tokens
from avatarapp.accounts.models import User, hash_token
from avatarapp.actions import jobs as job_actions
from avatarapp.jobs.models import Job
from tests.conftest import ROOT
from tests.helpers import Api, consenting_guest_with_photo, free_port, new_guest, wait_until

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH"),
]

PASSWORD = "kite-river-mango-42"
HANG_GUARD = 10.0  # seconds: far above the ~1 s the socket timeouts allow; only catches a hang


class OwnRedis:
    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, 10, f"redis-server to answer on port {self.port}")

    def answers(self) -> bool:
        try:
            return bool(redis_py.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis_py.RedisError:
            return False

    def client(self) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url, socket_timeout=2)

    def hang(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies only once it runs
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server():
    server = OwnRedis(free_port())
    server.start()
    yield server
    server.kill()


SETTINGS_DUMP = """
import json
from django.conf import settings
print(json.dumps({
    "CACHES": settings.CACHES,
    "CELERY": {name: getattr(settings, name) for name in dir(settings) if name.startswith("CELERY_")},
}, default=str))
"""


def settings_with_redis(url: str) -> dict:
    """What avatarapp/settings.py makes of REDIS_URL=url: its CACHES and its CELERY_* settings."""
    env = dict(os.environ, REDIS_URL=url, DJANGO_SETTINGS_MODULE="avatarapp.settings")
    out = subprocess.run([sys.executable, "-c", SETTINGS_DUMP], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def on_own_redis(redis_server, settings, monkeypatch):
    """The cache and the web side's Celery app on the test's Redis, configured as in production."""
    configured = settings_with_redis(redis_server.url)
    assert configured["CACHES"]["default"]["OPTIONS"]["socket_timeout"] <= 1  # fails fast, by design
    settings.CACHES = configured["CACHES"]
    app = Celery("redis-down-test", set_as_current=False)
    app.conf.update({name.removeprefix("CELERY_").lower(): value for name, value in configured["CELERY"].items()})
    assert app.conf.broker_url == redis_server.url
    monkeypatch.setattr(job_actions, "app", app)
    monkeypatch.setattr(health, "app", app)
    monkeypatch.setattr(tokens.breaker, "paused_until", 0.0)
    yield redis_server
    app.pool.force_close_all()
    cache.close()


def token_cached(redis_server: OwnRedis, token: str) -> bool:
    return bool(redis_server.client().exists(cache.make_key(tokens.token_cache_key(hash_token(token)))))


def queued(redis_server: OwnRedis, queue: str = "gpu.demo") -> list[str]:
    return [m.decode() for m in redis_server.client().lrange(queue, 0, -1)]


def served_from_cache(api: Api) -> bool:
    """Whether a token-authenticated request found its token in the cache (no token query)."""
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/me").status_code == 200
    return not any("apitoken" in q["sql"].lower() for q in queries.captured_queries)


def token_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == tokens.__name__ and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("outage", ["hung", "down"])
def test_nothing_answers_500_while_redis_is_away_and_service_resumes_when_it_returns(
        outage, packs, on_own_redis, caplog):
    redis_server = on_own_redis
    # --- Redis up: a guest with a photo and a queued job, an account that can log in.
    guest = new_guest()
    photo = guest.upload_fixture().json()
    assert guest.get("/me").status_code == 200
    assert served_from_cache(guest)
    assert token_cached(redis_server, guest.token)
    before = guest.post("/jobs", {"photo": photo["id"], "pack": "avatar"})
    assert before.status_code == 202, before.content
    assert any(before.json()["id"] in m for m in queued(redis_server))
    User.objects.create_user(email="asha@example.com", password=PASSWORD, language="en")
    leaving = new_guest(consent=False)
    site_user, _ = consenting_guest_with_photo()
    jobs_before = Job.objects.count()

    # --- Redis away.
    redis_server.hang() if outage == "hung" else redis_server.kill()
    caplog.set_level(logging.WARNING)

    # Bearer tokens: read from the database, the failure logged once, not per request.
    assert not served_from_cache(guest)
    for _ in range(3):
        assert guest.get("/me").status_code == 200
    assert len(token_warnings(caplog)) == 1, [r.getMessage() for r in token_warnings(caplog)]
    # Logging out deletes the token (its cache entry cannot be cleared, and that is no 500).
    assert leaving.post("/auth/logout").status_code == 204
    assert leaving.get("/me").status_code == 401

    # Guest creation and login: rate limits let them through (avatarapp/lib/ratelimit.py).
    created = Api().post("/auth/guest")
    assert created.status_code != 500
    assert created.status_code == 201, created.content
    login = Api().post("/auth/login", {"email": "asha@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.content

    # The site's pages.
    anonymous = Client()
    for page in ("/", "/sign-in", "/sign-up", "/offline"):
        assert anonymous.get(page).status_code == 200, page
    signed_in = Client()
    signed_in.force_login(site_user)
    for page in ("/", "/account", "/gallery", "/upload"):
        assert signed_in.get(page).status_code == 200, page

    # Health: the process answers; ready it is not, and it says why, promptly.
    assert anonymous.get("/healthz").status_code == 200
    started = time.monotonic()
    ready = anonymous.get("/readyz")
    assert time.monotonic() - started < HANG_GUARD
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["broker"].startswith("error"), checks
    assert checks["cache"].startswith("error"), checks
    assert checks["database"] == "ok"

    # A new job: 503 queue_unavailable, promptly, and no row left behind.
    started = time.monotonic()
    refused = guest.post("/jobs", {"photo": photo["id"], "pack": "avatar"})
    assert time.monotonic() - started < HANG_GUARD
    assert refused.status_code == 503, refused.content
    assert refused.json()["error"]["code"] == "queue_unavailable"
    assert Job.objects.count() == jobs_before

    # --- Redis back: nothing restarted, service resumes.
    redis_server.resume() if outage == "hung" else redis_server.start()
    wait_until(lambda: anonymous.get("/readyz").status_code == 200, 20, "/readyz to be 200 again")
    assert anonymous.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok", "worker": "ok"}
    # Token lookups use the cache again (after the short pause that follows a failure).
    wait_until(lambda: served_from_cache(guest), 30, "the token cache to be used again")
    assert token_cached(redis_server, guest.token)
    after = guest.post("/jobs", {"photo": photo["id"], "pack": "avatar"})
    assert after.status_code == 202, after.content
    assert any(after.json()["id"] in m for m in queued(redis_server))

    # No job lost: a Redis that was down lost its queue; the reaper sends the queued job again.
    if outage == "down":
        assert not any(before.json()["id"] in m for m in queued(redis_server))
    from django.conf import settings

    from worker.reaper import reap_stale_jobs

    settings.AVATAR_REQUEUE_AFTER = 0
    assert reap_stale_jobs()["resent"] >= 1
    assert any(before.json()["id"] in m for m in queued(redis_server))


def test_a_hung_redis_costs_the_token_lookups_one_timeout_per_pause(on_own_redis, monkeypatch):
    """While the cache is hung, a process waits for its socket timeout once, then reads the
    database straight away for a few seconds (tokens.breaker.pause) instead of waiting
    on every request; then it tries the cache again."""
    guest = new_guest()
    tried = []

    class Spy:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                tried.append(name)
                return getattr(cache, name)(*args, **kwargs)
            return call

    monkeypatch.setattr(tokens, "cache", Spy())
    on_own_redis.hang()
    started = time.monotonic()
    assert guest.get("/me").status_code == 200
    assert time.monotonic() - started < HANG_GUARD
    assert tried == ["get"]  # it failed: not written either
    for _ in range(5):
        assert guest.get("/me").status_code == 200
    assert tried == ["get"]
    monkeypatch.setattr(tokens.breaker, "paused_until", 0.0)  # the pause is over
    assert guest.get("/me").status_code == 200
    assert tried == ["get", "get"]
