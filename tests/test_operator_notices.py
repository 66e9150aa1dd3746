"""A newcomer sees the truth: with only the demo model running, staff are told how to get a real one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from avatarapp.accounts.models import User
from avatarapp.ops.management.commands.serve import runs_only_demo_model
from avatarapp.ops.models import WorkerStatus

pytestmark = pytest.mark.django_db


def live_worker(family: str) -> None:
    WorkerStatus.objects.create(hostname=f"{family}@tests", pid=1, family=family, base_model=family,
                                ready_at=timezone.now(), seen_at=timezone.now() + timedelta(minutes=5))


def signed_in(staff: bool) -> Client:
    user = User.objects.create_user(email=f"{'staff' if staff else 'user'}@example.com", password="x" * 20,
                                    is_staff=staff, is_superuser=staff)
    client = Client(HTTP_ACCEPT_LANGUAGE="hi")
    client.force_login(user)
    return client


def test_staff_see_how_to_get_a_real_model_while_only_the_demo_model_runs(packs):
    staff = signed_in(staff=True)
    page = staff.get("/").content.decode()
    assert "data-demo-only" in page and "make model NAME=sd15" in page and "import_model" in page
    admin = staff.get("/admin/").content.decode()
    assert "data-demo-only" in admin
    assert runs_only_demo_model()  # what makes `make run` print its note


def test_nobody_else_sees_it_and_staff_stop_seeing_it_once_a_real_model_runs(packs):
    assert "data-demo-only" not in signed_in(staff=False).get("/").content.decode()
    assert "data-demo-only" not in Client().get("/").content.decode()
    live_worker("sd15")
    assert "data-demo-only" not in signed_in(staff=True).get("/").content.decode()
    assert not runs_only_demo_model()
