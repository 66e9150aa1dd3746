"""Guests, registration (including upgrading a guest), login, logout and their errors."""

import pytest
from django.test import override_settings

from tests.helpers import Api, new_guest

pytestmark = pytest.mark.django_db


def test_a_guest_gets_a_token_that_works():
    response = Api().post("/auth/guest")
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["is_guest"] is True
    me = Api(body["token"]).get("/me").json()
    assert me["id"] == body["user"]["id"]
    assert me["quota"] == {"used": 0, "limit": 12}


def test_registering_upgrades_the_guest_and_keeps_their_photos():
    guest = new_guest()
    photo = guest.upload_fixture().json()
    guest_id = guest.get("/me").json()["id"]
    response = guest.post("/auth/register", {"email": "Asha@Example.com", "password": "a long secret"})
    assert response.status_code == 201
    assert response.json()["user"] == {"id": guest_id, "is_guest": False}
    again = Api()
    login = again.post("/auth/login", {"email": "asha@example.com", "password": "a long secret"})
    assert login.status_code == 200
    again.token = login.json()["token"]
    assert again.get(f"/photos/{photo['id']}").status_code == 200


def test_registering_by_phone_then_logging_in_by_phone():
    assert Api().post("/auth/register", {"phone": "+91 98765 43210", "password": "tea at four"}).status_code == 201
    assert Api().post("/auth/login", {"phone": "+919876543210", "password": "tea at four"}).status_code == 200


def test_registering_twice_is_a_conflict():
    Api().post("/auth/register", {"email": "ravi@example.com", "password": "first long secret"})
    response = Api().post("/auth/register", {"email": "ravi@example.com", "password": "second long secret"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_registered"


@pytest.mark.parametrize("body, field", [
    ({"password": "longenough"}, "email"),
    ({"email": "not-an-email", "password": "longenough"}, "email"),
    ({"phone": "12", "password": "longenough"}, "phone"),
    ({"email": "a@b.in", "password": "short"}, "password"),
    ({"email": "a@b.in"}, "password"),
])
def test_bad_registration_details_are_a_400_naming_the_field(body, field):
    response = Api().post("/auth/register", body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_a_wrong_password_is_a_401_in_the_users_language():
    Api().post("/auth/register", {"email": "meera@example.com", "password": "right password"})
    response = Api(language="hi").post("/auth/login", {"email": "meera@example.com", "password": "wrong password"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_credentials"
    assert error["message"] != "These details do not match an account."


def test_logout_revokes_the_token():
    api = new_guest()
    assert api.post("/auth/logout").status_code == 204
    assert api.get("/me").status_code == 401


@override_settings(AVATAR_RATE_GUESTS_PER_HOUR=3)
def test_too_many_guests_from_one_address_are_told_to_wait():
    from django.core.cache import cache

    cache.clear()
    codes = [Api().post("/auth/guest").status_code for _ in range(5)]
    assert codes == [201, 201, 201, 429, 429]


@override_settings(AVATAR_RATE_LOGINS_PER_HOUR=2)
def test_repeated_failed_logins_are_limited():
    from django.core.cache import cache

    cache.clear()
    wrong = {"email": "x@example.com", "password": "whatever1"}
    codes = [Api().post("/auth/login", wrong).status_code for _ in range(4)]
    assert codes == [401, 401, 429, 429]


def test_requests_without_a_token_get_a_json_401():
    response = Api().get("/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Api("made-up-token").get("/jobs").status_code == 401
