"""Operators' doors: /healthz, /readyz and the OpenAPI schema generated from the code."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_answers_and_readyz_checks_database_and_broker():
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_says_unavailable_when_the_broker_is_unreachable(settings):
    from avatarapp.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = Client().get("/readyz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")


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
