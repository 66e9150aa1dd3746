"""Nothing breaks it: hostile input is a clear, localised 4xx, never a 500, and stores nothing.

Everything goes through HTTP. NUL is refused by the request guard before any view, so these tests
prove the 4xx on SQLite too, where a NUL would otherwise be stored (PostgreSQL would raise a
DataError, which the safety net turns into a 400 as well: see the last tests).
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError
from django.test import Client, override_settings
from django.utils import translation

from avatarapp.accounts.models import ApiToken, User
from avatarapp.jobs.models import Job, Output
from avatarapp.lib import refusals
from avatarapp.photos.models import Photo
from avatarapp.sharing.models import Report, Share
from tests.helpers import FIXTURES, Api, new_guest, store_picture

pytestmark = pytest.mark.django_db

LANGUAGES = ("en", "hi")
FORM = "application/x-www-form-urlencoded"
MESSAGES = {
    "invalid_input": refusals.INVALID_INPUT,
    "malformed_request": refusals.MALFORMED,
    "too_large": refusals.TOO_LARGE,
    "too_many_fields": refusals.TOO_MANY_FIELDS,
    "too_many_files": refusals.TOO_MANY_FILES,
    "bad_host": refusals.BAD_HOST,
    "csrf_failed": refusals.CSRF_FAILED,
}


def stored() -> dict:
    """Every row and file a request could leave behind."""
    counts = {model.__name__: model.objects.count() for model in (User, ApiToken, Photo, Job, Output, Share, Report)}
    counts["registered"] = User.objects.filter(is_guest=False).count()
    counts["files"] = sorted(str(p) for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())
    return counts


def in_language(message, lang: str) -> str:
    with translation.override(lang):
        return str(message)


def assert_json_refusal(send, status: int, code: str) -> None:
    """`send(lang)` answers `status` with the API's error shape, in both languages; nothing stored."""
    before = stored()
    answers = {lang: send(lang) for lang in LANGUAGES}
    for lang, response in answers.items():
        assert response.status_code == status, (lang, response.status_code, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        body = response.json()
        assert list(body) == ["error"]
        assert body["error"]["code"] == code
        assert body["error"]["message"] == in_language(MESSAGES.get(code, body["error"]["message"]), lang)
    assert answers["hi"].json()["error"]["message"] != answers["en"].json()["error"]["message"]
    assert stored() == before


def assert_page_refusal(send, status: int, code: str) -> None:
    """`send(lang)` answers `status` with the site's error page in that language; nothing stored."""
    before = stored()
    for lang in LANGUAGES:
        response = send(lang)
        assert response.status_code == status, (lang, response.status_code, response.content[:300])
        assert response["Content-Type"].startswith("text/html")
        page = html.unescape(response.content.decode())
        assert f'<html lang="{lang}"' in page
        assert in_language(MESSAGES[code], lang) in page, lang
    assert in_language(MESSAGES[code], "hi") != in_language(MESSAGES[code], "en")
    assert stored() == before


@pytest.fixture
def owner(packs):
    """A consenting guest with a photo, a finished picture and a live share link, on both doors."""
    api = new_guest()
    photo, job, output = store_picture(api)
    token = api.post(f"/outputs/{output.id}/shares", {}).json()["token"]
    user = User.objects.get(id=api.get("/me").json()["id"])
    site = Client()
    site.force_login(user)
    return SimpleNamespace(api=api, photo_id=photo["id"], token=token, output=output, user=user, site=site)


# --- 1. Invalid text, through the API ------------------------------------------------------

def api_json(owner, lang, method, path, body=None, raw: bytes | str | None = None, token: bool = True,
             content_type: str = "application/json"):
    headers = {"Accept-Language": lang}
    if token:
        headers["Authorization"] = f"Bearer {owner.api.token}"
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    call = getattr(Client(), method)
    if data is None:
        return call(f"/api/v1{path}", headers=headers)
    return call(f"/api/v1{path}", data=data, content_type=content_type, headers=headers)


LOGIN = {"password": "a long password"}
API_TEXT_CASES = {
    "login email with NUL": lambda o, lang: api_json(
        o, lang, "post", "/auth/login", {"email": "meera\x00@example.in", **LOGIN}, token=False),
    "login email with a lone surrogate": lambda o, lang: api_json(
        o, lang, "post", "/auth/login", raw='{"email": "meera\\ud800@example.in", "password": "x"}', token=False),
    "login body not UTF-8": lambda o, lang: api_json(
        o, lang, "post", "/auth/login", raw=b'{"email": "m\xffera@example.in", "password": "x"}', token=False),
    "register email with NUL": lambda o, lang: api_json(
        o, lang, "post", "/auth/register", {"email": "new\x00@example.in", **LOGIN}, token=False),
    "register email with an escaped NUL": lambda o, lang: api_json(
        o, lang, "post", "/auth/register", raw='{"email": "new\\u0000@example.in", "password": "a long one"}',
        token=False),
    "guest upgrade with NUL": lambda o, lang: api_json(
        o, lang, "post", "/auth/register", {"email": "guest\x00@example.in", **LOGIN}),
    "register body not UTF-8 (an encoded surrogate)": lambda o, lang: api_json(
        o, lang, "post", "/auth/register", raw=b'{"email": "\xed\xa0\x80@example.in", "password": "a long one"}',
        token=False),
    "job pack with NUL": lambda o, lang: api_json(
        o, lang, "post", "/jobs", {"photo": o.photo_id, "pack": "avatar\x00"}),
    "job pack with a lone surrogate": lambda o, lang: api_json(
        o, lang, "post", "/jobs", raw=json.dumps({"photo": o.photo_id, "pack": "avatar"}).replace(
            '"avatar"', '"avatar\\udc80"')),
    "job field name with NUL": lambda o, lang: api_json(
        o, lang, "post", "/jobs", {"photo": o.photo_id, "pack": "avatar", "x\x00": [{"deep": "ok"}]}),
    "share token NUL": lambda o, lang: api_json(o, lang, "delete", "/shares/%00"),
    "share token not UTF-8": lambda o, lang: api_json(o, lang, "delete", "/shares/%FF%FE"),
    "share token an encoded surrogate": lambda o, lang: api_json(o, lang, "delete", "/shares/%ED%A0%80"),
    "query with NUL": lambda o, lang: api_json(o, lang, "get", "/jobs?cursor=%00"),
    "query not UTF-8": lambda o, lang: api_json(o, lang, "get", "/packs?q=%C3%28", token=False),
}


@pytest.mark.parametrize("case", list(API_TEXT_CASES))
def test_invalid_text_is_a_400_invalid_input_from_the_api(owner, case):
    assert_json_refusal(lambda lang: API_TEXT_CASES[case](owner, lang), 400, "invalid_input")
    assert Share.objects.filter(token=owner.token).exists()
    assert User.objects.get(id=owner.user.id).is_guest


def test_a_session_cookie_with_nul_is_refused_before_the_session_is_looked_up(owner):
    def send(lang):
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = "\x00" * 32
        return client.get("/api/v1/me", headers={"Accept-Language": lang})

    assert_json_refusal(send, 400, "invalid_input")


# --- 1. Invalid text, through the site's forms and pages -------------------------------------

def site_form(client: Client, lang: str, path: str, body: str):
    return client.post(path, data=body, content_type=FORM, headers={"Accept-Language": lang})


SITE_TEXT_CASES = {
    "sign-in email with NUL": lambda o, lang: site_form(Client(), lang, "/sign-in",
                                                        "email=meera%00%40example.in&password=x"),
    "sign-in email not UTF-8": lambda o, lang: site_form(Client(), lang, "/sign-in", "email=m%FFera&password=x"),
    "sign-up email with NUL": lambda o, lang: site_form(Client(), lang, "/sign-up",
                                                        "email=new%00%40example.in&password=a+long+password"),
    "sign-up email an encoded surrogate": lambda o, lang: site_form(
        Client(), lang, "/sign-up", "email=%ED%A0%80%40example.in&password=a+long+password"),
    "guest's sign-up with NUL": lambda o, lang: site_form(o.site, lang, "/sign-up",
                                                          "email=g%00%40example.in&password=a+long+password"),
    "share page NUL, no account": lambda o, lang: Client().get("/s/%00", headers={"Accept-Language": lang}),
    "share page not UTF-8": lambda o, lang: Client().get("/s/%FF", headers={"Accept-Language": lang}),
    "report reason with NUL": lambda o, lang: site_form(Client(), lang, f"/s/{o.token}/report",
                                                        "reason=other%00"),
    "report details with NUL": lambda o, lang: site_form(Client(), lang, f"/s/{o.token}/report",
                                                         "reason=other&details=look%00"),
    "report details not UTF-8": lambda o, lang: site_form(Client(), lang, f"/s/{o.token}/report",
                                                          "reason=other&details=%E0%A4"),
    "style choice with NUL": lambda o, lang: site_form(o.site, lang, f"/photos/{o.photo_id}/style",
                                                       "pack=avatar%00"),
    "style choice (multipart) with NUL": lambda o, lang: o.site.post(
        f"/photos/{o.photo_id}/style", {"pack": "avatar\x00"}, headers={"Accept-Language": lang}),
    "query with NUL": lambda o, lang: Client().get("/consent?next=%00", headers={"Accept-Language": lang}),
}


@pytest.mark.parametrize("case", list(SITE_TEXT_CASES))
def test_invalid_text_is_the_error_page_on_the_site(owner, case):
    assert_page_refusal(lambda lang: SITE_TEXT_CASES[case](owner, lang), 400, "invalid_input")
    assert Share.objects.filter(token=owner.token).exists()
    assert User.objects.get(id=owner.user.id).is_guest


def test_the_refusal_page_keeps_the_language_form_working(db):
    """The page is drawn before CSRF middleware runs; its token still matches the cookie it sets."""
    client = Client(enforce_csrf_checks=True)
    page = site_form(client, "hi", "/sign-in", "email=a%00")
    assert page.status_code == 400
    token = page.content.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = client.post("/i18n/setlang/", {"language": "ta", "next": "/", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "ta"


def test_the_same_forms_still_work_with_ordinary_text(owner):
    """The guard refuses only invalid text: Indian scripts, emoji and NUL-free forms pass."""
    response = site_form(owner.site, "hi", f"/photos/{owner.photo_id}/style", "pack=avatar")
    assert response.status_code == 302 and Job.objects.filter(user=owner.user).count() == 2
    response = site_form(Client(), "hi", f"/s/{owner.token}/report", urlencode(
        {"reason": "other", "details": "यह मेरी तस्वीर है 🙏 ਪੰਜਾਬੀ"}))
    assert response.status_code == 302 and Report.objects.get().details.startswith("यह")
    response = Api().post("/auth/register", {"email": "मीरा@example.in", "password": "a long password"})
    assert response.status_code in (201, 400), response.content
    assert response.status_code == 201 or response.json()["error"]["code"] != "invalid_input"


# --- 2. Bodies Django itself refuses ---------------------------------------------------------

def many_files(n: int) -> list:
    return [SimpleUploadedFile(f"p{i}.jpg", b"x") for i in range(n)]


API_BODY_CASES = {
    "multipart without a boundary": (400, "malformed_request", lambda o, lang: api_json(
        o, lang, "post", "/photos", raw=b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n--x--",
        content_type="multipart/form-data")),
    "JSON over 2.5 MB": (413, "too_large", lambda o, lang: api_json(
        o, lang, "post", "/jobs", {"photo": o.photo_id, "pack": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})),
    "over 1,000 multipart fields": (413, "too_many_fields", lambda o, lang: Client().post(
        "/api/v1/photos", {f"f{i}": "1" for i in range(1001)},
        headers={"Authorization": f"Bearer {o.api.token}", "Accept-Language": lang})),
    "over 1,000 form fields": (413, "too_many_fields", lambda o, lang: api_json(
        o, lang, "post", "/auth/login", raw="&".join(f"f{i}=1" for i in range(1001)), content_type=FORM)),
    "over 1,000 query fields": (413, "too_many_fields", lambda o, lang: api_json(
        o, lang, "get", "/jobs?" + "&".join(f"f{i}=1" for i in range(1001)))),
    "over 100 files": (413, "too_many_files", lambda o, lang: Client().post(
        "/api/v1/photos", {"image": many_files(101)},
        headers={"Authorization": f"Bearer {o.api.token}", "Accept-Language": lang})),
    "JSON nested beyond any parser": (400, "malformed_request", lambda o, lang: api_json(
        o, lang, "post", "/jobs", raw="[" * 200_000 + "]" * 200_000)),
    "multipart where JSON is expected": (400, "malformed_request", lambda o, lang: Client().post(
        "/api/v1/jobs", {"photo": o.photo_id, "pack": "avatar"},
        headers={"Authorization": f"Bearer {o.api.token}", "Accept-Language": lang})),
}


@pytest.mark.parametrize("case", list(API_BODY_CASES))
def test_bodies_over_djangos_limits_answer_in_the_api_shape(owner, case):
    status, code, send = API_BODY_CASES[case]
    assert_json_refusal(lambda lang: send(owner, lang), status, code)


SITE_BODY_CASES = {
    "upload without a boundary": (400, "malformed_request", lambda o, lang: o.site.post(
        "/upload", data=b"--x\r\n\r\n--x--", content_type="multipart/form-data", headers={"Accept-Language": lang})),
    "upload of over 100 files": (413, "too_many_files", lambda o, lang: o.site.post(
        "/upload", {"image": many_files(101)}, headers={"Accept-Language": lang})),
    "sign-in with over 1,000 fields": (413, "too_many_fields", lambda o, lang: site_form(
        Client(), lang, "/sign-in", "&".join(f"f{i}=1" for i in range(1001)))),
    "sign-in body over 2.5 MB": (413, "too_large", lambda o, lang: site_form(
        Client(), lang, "/sign-in", "email=" + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))),
}


@pytest.mark.parametrize("case", list(SITE_BODY_CASES))
def test_bodies_over_djangos_limits_are_the_error_page_on_the_site(owner, case):
    status, code, send = SITE_BODY_CASES[case]
    assert_page_refusal(lambda lang: send(owner, lang), status, code)


def test_an_unknown_host_is_refused_in_the_shape_of_each_door(owner):
    assert_json_refusal(lambda lang: Client().get("/api/v1/packs", headers={
        "Accept-Language": lang, "Host": "evil.example"}), 400, "bad_host")
    assert_page_refusal(lambda lang: Client().get("/", headers={
        "Accept-Language": lang, "Host": "evil.example"}), 400, "bad_host")


# --- 3. The contract: 401 not CSRF, Retry-After, Allow, HEAD ---------------------------------

def revoked_token() -> str:
    api = new_guest()
    assert api.post("/auth/logout").status_code == 204
    return api.token


@pytest.mark.parametrize("authorization", ["", "Bearer", "Bearer not-a-token", "Basic bWU6cHc=",
                                           "Bearer \x7f\x7f", "revoked"])
@pytest.mark.parametrize("method, path", [
    ("post", "/api/v1/jobs"),
    ("post", "/api/v1/auth/logout"),
    ("delete", "/api/v1/me"),
    ("delete", "/api/v1/photos/00000000-0000-0000-0000-000000000000"),
])
def test_no_malformed_or_revoked_bearer_token_is_a_localised_401_not_a_csrf_403(db, authorization, method, path):
    if authorization == "revoked":
        authorization = f"Bearer {revoked_token()}"
    client = Client(enforce_csrf_checks=True)  # as a real client: no test-only CSRF exemption

    def send(lang):
        headers = {"Accept-Language": lang, **({"Authorization": authorization} if authorization else {})}
        return getattr(client, method)(path, data="{}", content_type="application/json", headers=headers)

    before = stored()
    answers = {lang: send(lang) for lang in LANGUAGES}
    for response in answers.values():
        assert response.status_code == 401, response.content
        assert response.json()["error"]["code"] == "not_authenticated"
    assert answers["hi"].json()["error"]["message"] != answers["en"].json()["error"]["message"]
    assert stored() == before


def test_a_signed_in_session_is_still_csrf_checked_on_the_api(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)
    assert_json_refusal(lambda lang: client.post("/api/v1/jobs", {"photo": owner.photo_id, "pack": "avatar"},
                                                 content_type="application/json",
                                                 headers={"Accept-Language": lang}), 403, "csrf_failed")
    client.get("/sign-in")  # sets the CSRF cookie, as the site's pages do
    response = client.post("/api/v1/jobs", {"photo": owner.photo_id, "pack": "avatar"},
                           content_type="application/json",
                           headers={"X-CSRFToken": client.cookies[settings.CSRF_COOKIE_NAME].value})
    assert response.status_code == 202, response.content


def test_a_site_form_without_its_csrf_token_is_the_localised_error_page(db):
    client = Client(enforce_csrf_checks=True)
    assert_page_refusal(lambda lang: site_form(client, lang, "/sign-in", "email=a%40example.in&password=x"),
                        403, "csrf_failed")


def retry_after(response) -> int:
    assert response.status_code == 429, response.content
    value = response["Retry-After"]
    assert value.isdigit(), value
    return int(value)


def fresh_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@override_settings(AVATAR_RATE_GUESTS_PER_HOUR=1, AVATAR_RATE_LOGINS_PER_HOUR=1)
def test_every_rate_limited_429_says_when_the_window_ends(db):
    import time

    left = 3600 - int(time.time()) % 3600
    client = Client(REMOTE_ADDR=fresh_ip())
    answers = [client.post("/api/v1/auth/guest") for _ in range(2)]
    assert answers[0].status_code == 201
    assert abs(retry_after(answers[1]) - left) <= 2
    assert answers[1].json()["error"]["code"] == "rate_limited"

    wrong = {"email": f"{secrets.token_hex(4)}@example.in", "password": "not the password"}
    answers = [client.post("/api/v1/auth/login", wrong, content_type="application/json") for _ in range(2)]
    assert answers[0].status_code == 401 and abs(retry_after(answers[1]) - left) <= 2

    form = urlencode({"email": f"{secrets.token_hex(4)}@example.in", "password": "not the password"})
    answers = [site_form(client, "hi", "/sign-in", form) for _ in range(2)]
    assert answers[0].status_code == 401 and abs(retry_after(answers[1]) - left) <= 2
    assert answers[1]["Content-Type"].startswith("text/html")


@override_settings(AVATAR_GUEST_DAILY_QUOTA=1)
def test_a_quota_429_says_when_the_oldest_picture_leaves_the_24_hours(owner):
    # store_picture made one picture a moment ago: the quota of one is spent until it is 24 hours old.
    response = owner.api.post("/jobs", {"photo": owner.photo_id, "pack": "avatar"})
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert 24 * 3600 - 60 <= retry_after(response) <= 24 * 3600
    page = site_form(owner.site, "en", f"/photos/{owner.photo_id}/style", "pack=avatar")
    assert 24 * 3600 - 60 <= retry_after(page) <= 24 * 3600


def test_every_405_names_the_allowed_methods(owner):
    response = owner.api.client.put("/api/v1/packs")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"
    response = owner.api.get("/auth/guest")
    assert response.status_code == 405 and response["Allow"] == "POST"
    for lang in LANGUAGES:
        page = owner.site.get("/account/sign-out", headers={"Accept-Language": lang})
        assert page.status_code == 405 and page["Allow"] == "POST"
        assert f'<html lang="{lang}"' in page.content.decode()


def test_head_works_wherever_get_does_on_the_api(owner):
    photo = owner.api.get(f"/photos/{owner.photo_id}").json()
    for path, auth in [("/api/v1/packs", False), ("/api/v1/consent", False), ("/api/v1/me", True),
                       ("/api/v1/jobs", True), (photo["url"], True), ("/api/v1/openapi.json", False)]:
        headers = owner.api.headers() if auth else {}
        get = owner.api.client.get(path, headers=headers)
        head = owner.api.client.head(path, headers=headers)
        assert get.status_code == 200 and head.status_code == 200, (path, head.status_code)
        assert head["Content-Type"] == get["Content-Type"] and head.content == b""
    head = Client().head("/api/v1/me")
    assert head.status_code == 401 and head.content == b""
    assert Client().head("/api/v1/no-such-thing").status_code == 404


# --- The safety net: a DataError that reaches a view -----------------------------------------

def refuse_text(*args, **kwargs):
    raise DataError("invalid byte sequence for encoding \"UTF8\": 0x00")


def test_a_data_error_in_an_api_view_is_a_400_not_a_500(owner, monkeypatch):
    monkeypatch.setattr("avatarapp.api.views_media.do_revoke_share", refuse_text)
    assert_json_refusal(lambda lang: owner.api.client.delete(
        f"/api/v1/shares/{owner.token}", headers={**owner.api.headers(), "Accept-Language": lang}),
        400, "invalid_input")


def test_a_data_error_in_a_site_view_is_the_error_page_not_a_500(owner, monkeypatch):
    monkeypatch.setattr("avatarapp.sharing.views.live_share", refuse_text)
    assert_page_refusal(lambda lang: Client().get(f"/s/{owner.token}", headers={"Accept-Language": lang}),
                        400, "invalid_input")


def test_an_upload_still_works_through_the_guard(owner):
    response = owner.api.upload((FIXTURES / "portrait.jpg").read_bytes())
    assert response.status_code == 201, response.content
