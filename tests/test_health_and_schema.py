"""Operators' doors: /healthz, /readyz and the OpenAPI schema generated from the code."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from avatarapp.ops.models import WorkerStatus

pytestmark = pytest.mark.django_db


def warm_worker(seen_seconds_ago: float = 0) -> WorkerStatus:
    seen_at = timezone.now() - timedelta(seconds=seen_seconds_ago)
    return WorkerStatus.objects.create(hostname="gpu@test", pid=4242, family="sd15", base_model="/models/base",
                                       ready_at=seen_at, seen_at=seen_at)


def test_healthz_answers():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_is_unavailable_until_a_worker_is_warm():
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable",
                               "checks": {"database": "ok", "broker": "ok", "worker": "no warm worker"}}


def test_readyz_does_not_count_a_worker_that_stopped_reporting(settings):
    warm_worker(seen_seconds_ago=settings.AVATAR_WORKER_STALE_AFTER + 1)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"] == "no warm worker"


def test_readyz_is_ready_with_database_broker_and_a_warm_worker(settings):
    warm_worker(seen_seconds_ago=settings.AVATAR_WORKER_STALE_AFTER - 1)
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "worker": "ok"}}


def test_readyz_says_unavailable_when_the_broker_is_unreachable(settings):
    from avatarapp.celery import app

    warm_worker()
    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = Client().get("/readyz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["worker"] == "ok"


def test_the_openapi_schema_covers_the_whole_contract():
    schema = Client().get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    expected = {
        "/api/v1/auth/guest": {"post"}, "/api/v1/auth/register": {"post"}, "/api/v1/auth/login": {"post"},
        "/api/v1/auth/logout": {"post"}, "/api/v1/consent": {"get"}, "/api/v1/me/consent": {"post"},
        "/api/v1/me": {"get", "delete"}, "/api/v1/me/export": {"get"}, "/api/v1/packs": {"get"},
        "/api/v1/photos": {"post"}, "/api/v1/photos/{photo_id}": {"get", "delete"},
        "/api/v1/jobs": {"get", "post"}, "/api/v1/jobs/{job_id}": {"get"}, "/api/v1/jobs/{job_id}/cancel": {"post"},
        "/api/v1/outputs": {"get"}, "/api/v1/outputs/{output_id}": {"delete"},
        "/api/v1/outputs/{output_id}/shares": {"post"}, "/api/v1/shares/{token}": {"delete"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    job = schema["components"]["schemas"]["JobOut"]["properties"]
    assert {"id", "status", "progress", "queue_position", "outputs", "error"} <= set(job)
