"""Accounts that resist attack (issue 13, item 4), all through HTTP.

Password validators with localised messages; limits on registration, guest creation, sign-in
and password reset that answer 429 with Retry-After, and that a stranger cannot turn against
the account's owner; the client's address from a trusted proxy only; unknown and known accounts
answered alike, with a password hash either way; the admin's sign-in throttled; API tokens that
expire when idle and are refreshed at most once a minute; sign out everywhere; a limiter whose
cache is down lets requests through and says so in the log.

Each test gets a cache of its own (the shared one keeps counts across runs and other tests).
"""

from __future__ import annotations

import itertools
import logging
import re
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core import mail
from django.core.cache.backends.base import BaseCache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from avatarapp.accounts.models import ApiToken, User
from avatarapp.accounts.tokens import forget_token
from avatarapp.lib.ratelimit import real_address
from tests.helpers import Api, new_guest

pytestmark = pytest.mark.django_db

STRONG = "monsoon kites over Pune"
_caches = itertools.count()


@pytest.fixture(autouse=True)
def own_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"account-security-{next(_caches)}"}}
    settings.PASSWORD_HASHERS = ["tests.test_account_security.CountingHasher"]  # fast, and counted
    CountingHasher.verified = CountingHasher.encoded = 0


class CountingHasher(MD5PasswordHasher):
    """A fast hasher that counts its work: proves a code path hashed, without timing anything."""

    algorithm = "counting_md5"
    verified = 0
    encoded = 0

    def verify(self, password, encoded):
        CountingHasher.verified += 1
        return super().verify(password, encoded)

    def encode(self, password, salt):
        CountingHasher.encoded += 1
        return super().encode(password, salt)


class BrokenCache(BaseCache):
    """A cache whose server is gone: every call raises, as django's Redis backend does then."""

    def __init__(self, location, params):
        super().__init__(params)

    def _down(self, *args, **kwargs):
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    add = get = set = touch = delete = has_key = incr = decr = clear = _down
    get_many = set_many = delete_many = _down


def api(ip: str = "127.0.0.1", token: str | None = None, language: str | None = None) -> Api:
    client = Api(token, language)
    client.client = Client(REMOTE_ADDR=ip)
    return client


def error(response) -> dict:
    return response.json()["error"]


def assert_429(response) -> None:
    assert response.status_code == 429, response.content
    assert response["Retry-After"].isdigit() and 1 <= int(response["Retry-After"]) <= 3600
    if response["Content-Type"].startswith("application/json"):
        assert error(response)["code"] == "rate_limited"


def registered(email: str = "asha@example.in", password: str = STRONG, ip: str = "192.0.2.250") -> str:
    response = api(ip).post("/auth/register", {"email": email, "password": password})
    assert response.status_code == 201, response.content
    return response.json()["token"]


# --- 1. Passwords -----------------------------------------------------------------------------

WEAK = {
    "12345678": "This password is too common.",
    "password": "This password is too common.",
    "20240917481": "This password has only digits.",
    "        ": "This password repeats too few characters.",
    "abababab": "This password repeats too few characters.",
    "kite7": "Use at least 8 characters.",
    "asha.rao@example.in": "This password is too close to your email address or phone number.",
    "Asha.Rao@Example": "This password is too close to your email address or phone number.",
}


@pytest.mark.parametrize("password, message", list(WEAK.items()))
def test_a_weak_password_is_refused_with_a_localised_message_through_the_api(password, message):
    body = {"email": "asha.rao@example.in", "password": password}
    english = api(language="en").post("/auth/register", body)
    assert english.status_code == 400
    assert error(english)["code"] == "invalid_fields"
    assert message in error(english)["fields"]["password"]
    hindi = api(language="hi").post("/auth/register", body)
    assert hindi.status_code == 400
    assert hindi.json()["error"]["fields"]["password"] != error(english)["fields"]["password"], \
        "no Hindi translation yet (make messages, then translate)"
    assert not User.objects.filter(email="asha.rao@example.in").exists()


def test_a_phone_number_is_no_password():
    response = api().post("/auth/register", {"phone": "+91 98765 43210", "password": "+919876543210"})
    assert response.status_code == 400
    assert "phone number" in error(response)["fields"]["password"]


def test_a_guest_securing_the_account_gets_the_same_checks():
    guest = new_guest()
    response = guest.post("/auth/register", {"email": "meera@example.in", "password": "password1"})
    assert response.status_code == 400 and "password" in error(response)["fields"]
    assert User.objects.get(id=guest.get("/me").json()["id"]).is_guest
    assert guest.post("/auth/register", {"email": "meera@example.in", "password": STRONG}).status_code == 201


def test_the_sign_up_page_refuses_a_weak_password_in_the_readers_language():
    pages = {lang: Client().post("/sign-up", {"email": "ravi@example.in", "password": "password"},
                                 headers={"Accept-Language": lang}) for lang in ("en", "hi")}
    assert pages["en"].status_code == pages["hi"].status_code == 400
    assert "This password is too common." in pages["en"].content.decode()
    assert "This password is too common." not in pages["hi"].content.decode(), "no Hindi translation yet"
    assert not User.objects.filter(email="ravi@example.in").exists()


def test_a_reset_refuses_a_weak_password_and_revokes_every_token(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    token = registered("ravi@example.in")
    client = Client()
    assert client.post("/password-reset", {"email": "ravi@example.in"}).status_code == 302
    link = re.search(r"http://testserver(/password-reset/\S+)", mail.outbox[0].body).group(1)
    weak = client.post(link, {"password": "12345678"})
    assert weak.status_code == 400 and "This password is too common." in weak.content.decode()
    assert client.post(link, {"password": "a new monsoon kite"}).status_code == 302
    assert api(token=token).get("/me").status_code == 401  # a reset signs every app out


# --- 2. Limits ----------------------------------------------------------------------------------

def test_registrations_are_limited_per_client(settings):
    settings.AVATAR_RATE_REGISTRATIONS_PER_HOUR = 2
    codes = [api("198.51.100.1").post("/auth/register", {"email": f"u{i}@example.in", "password": STRONG})
             for i in range(3)]
    assert [c.status_code for c in codes[:2]] == [201, 201]
    assert_429(codes[2])
    assert not User.objects.filter(email="u2@example.in").exists()
    # Another client is not affected; the site's form shares the limit.
    assert api("198.51.100.2").post("/auth/register", {"email": "u3@example.in", "password": STRONG}).status_code == 201
    page = Client(REMOTE_ADDR="198.51.100.1").post("/sign-up", {"email": "u4@example.in", "password": STRONG})
    assert_429(page)


def test_guests_are_limited_per_client(settings):
    settings.AVATAR_RATE_GUESTS_PER_HOUR = 2
    answers = [api("198.51.100.3").post("/auth/guest") for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [201, 201]
    assert_429(answers[2])
    assert api("198.51.100.4").post("/auth/guest").status_code == 201


def test_failed_sign_ins_are_limited_per_client_and_account(settings):
    settings.AVATAR_RATE_LOGINS_PER_HOUR = 3
    registered("asha@example.in")
    stranger = api("203.0.113.5")
    answers = [stranger.post("/auth/login", {"email": "asha@example.in", "password": f"guess {i}"})
               for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [401, 401, 401]
    assert_429(answers[3])
    # Even the right password from that client waits: it guessed too often on this account.
    assert_429(stranger.post("/auth/login", {"email": "asha@example.in", "password": STRONG}))
    # The same client on another account is not yet refused.
    assert stranger.post("/auth/login", {"email": "ravi@example.in", "password": "guess"}).status_code == 401


def test_failed_sign_ins_are_limited_per_client_across_accounts(settings):
    settings.AVATAR_RATE_CLIENT_LOGIN_FAILURES_PER_HOUR = 3
    sprayer = api("203.0.113.6")
    answers = [sprayer.post("/auth/login", {"email": f"person{i}@example.in", "password": "Password1"})
               for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [401, 401, 401]
    assert_429(answers[3])
    # The site's form is the same door.
    assert_429(Client(REMOTE_ADDR="203.0.113.6").post("/sign-in", {"email": "x@example.in", "password": "y"}))


def test_a_stranger_cannot_lock_the_owner_out(settings):
    settings.AVATAR_RATE_LOGINS_PER_HOUR = 5
    settings.AVATAR_RATE_ACCOUNT_LOGIN_FAILURES_PER_HOUR = 8
    registered("asha@example.in")
    # Strangers from many addresses hammer the account until the per-account limit is long past.
    for n in range(4):
        for i in range(6):
            api(f"203.0.113.{10 + n}").post("/auth/login", {"email": "asha@example.in", "password": f"guess {i}"})
    # A fresh address now gets only a few tries on this account...
    fresh = api("203.0.113.50")
    answers = [fresh.post("/auth/login", {"email": "asha@example.in", "password": f"guess {i}"}) for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [401, 401, 401]
    assert_429(answers[3])
    # ...while the owner, from their own address, signs in, even after one typo.
    owner = api("198.51.100.77")
    assert owner.post("/auth/login", {"email": "asha@example.in", "password": "monsoon kites"}).status_code == 401
    assert owner.post("/auth/login", {"email": "asha@example.in", "password": STRONG}).status_code == 200
    site = Client(REMOTE_ADDR="198.51.100.78")
    assert site.post("/sign-in", {"email": "asha@example.in", "password": STRONG}).status_code == 302


def test_password_reset_requests_are_limited_per_client_and_messages_per_account(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.AVATAR_RATE_RESETS_PER_HOUR = 2
    settings.AVATAR_RATE_ACCOUNT_RESETS_PER_HOUR = 1
    User.objects.create_user(email="ravi@example.in", password=STRONG)
    client = Client(REMOTE_ADDR="203.0.113.20")
    answers = [client.post("/password-reset", {"email": "ravi@example.in"}) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [302, 302]
    assert_429(answers[2])
    assert len(mail.outbox) == 1  # the second request was answered alike, but sent nothing
    # From elsewhere: the same answer, still no second message in this hour.
    assert Client(REMOTE_ADDR="203.0.113.21").post("/password-reset", {"email": "ravi@example.in"}).status_code == 302
    assert len(mail.outbox) == 1


# --- 3. The client's address --------------------------------------------------------------------

def test_x_forwarded_for_is_read_only_from_a_trusted_proxy(settings):
    settings.AVATAR_RATE_GUESTS_PER_HOUR = 1

    def guest(remote: str, forwarded: str) -> int:
        return Client(REMOTE_ADDR=remote).post("/api/v1/auth/guest", headers={"X-Forwarded-For": forwarded}).status_code

    # No proxy configured: the header is the client's say-so, and ignored.
    assert guest("192.0.2.1", "198.51.100.1") == 201
    assert guest("192.0.2.1", "198.51.100.2") == 429
    # Behind a trusted proxy, every client is itself (the right-most untrusted address counts).
    settings.AVATAR_TRUSTED_PROXIES = ["10.0.0.0/8", "192.168.1.1"]
    assert guest("10.0.0.2", "198.51.100.3") == 201
    assert guest("10.0.0.2", "198.51.100.4") == 201
    assert guest("10.0.0.3", "6.6.6.6, 198.51.100.3, 192.168.1.1") == 429  # a forged left-most entry changes nothing
    # A client that is not the proxy cannot borrow someone else's address.
    assert guest("192.0.2.9", "198.51.100.5") == 201
    assert guest("192.0.2.9", "198.51.100.6") == 429


def test_the_right_most_untrusted_address_is_the_client():
    proxies = ("10.0.0.0/8",)
    assert str(real_address("10.1.2.3", "1.1.1.1, 203.0.113.9, 10.0.0.7", proxies)) == "203.0.113.9"
    assert str(real_address("203.0.113.1", "1.1.1.1", proxies)) == "203.0.113.1"
    assert str(real_address("10.1.2.3", "", proxies)) == "10.1.2.3"
    assert str(real_address("10.1.2.3", "not-an-address, 10.0.0.9", proxies)) == "10.0.0.9"
    assert str(real_address("10.1.2.3", "[2001:db8::1]:443", proxies)) == "2001:db8::1"
    assert str(real_address("10.1.2.3", "203.0.113.9:5555", proxies)) == "203.0.113.9"
    assert str(real_address("::ffff:10.1.2.3", "203.0.113.9", proxies)) == "203.0.113.9"
    assert str(real_address("10.1.2.3", "1.1.1.1", ())) == "10.1.2.3"


def test_ipv6_clients_are_counted_by_their_64(settings):
    settings.AVATAR_RATE_GUESTS_PER_HOUR = 1
    assert Client(REMOTE_ADDR="2001:db8:1:2::1").post("/api/v1/auth/guest").status_code == 201
    assert Client(REMOTE_ADDR="2001:db8:1:2::ffff").post("/api/v1/auth/guest").status_code == 429
    assert Client(REMOTE_ADDR="2001:db8:1:3::1").post("/api/v1/auth/guest").status_code == 201


# --- 4. Unknown and known accounts alike -----------------------------------------------------------

def test_an_unknown_account_and_a_wrong_password_are_answered_alike_and_both_hash():
    registered("asha@example.in")
    answers = {}
    for who in ("asha@example.in", "nobody@example.in"):
        before = CountingHasher.verified
        answers[who] = api(language="hi").post("/auth/login", {"email": who, "password": "not the password"})
        assert CountingHasher.verified == before + 1, f"{who}: no password was hashed"
    known, unknown = answers.values()
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    # The site's form too.
    pages = [Client().post("/sign-in", {"email": who, "password": "not it"}) for who in answers]
    assert pages[0].status_code == pages[1].status_code == 401
    assert all("These details do not match an account." in page.content.decode() for page in pages)


def test_an_unusable_password_also_hashes():
    User.objects.create_user(email="staff@example.in", password=None)  # unusable
    before = CountingHasher.verified
    assert api().post("/auth/login", {"email": "staff@example.in", "password": "anything 1"}).status_code == 401
    assert CountingHasher.verified == before + 1


def test_a_reset_for_an_unknown_account_is_answered_like_a_known_one(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    User.objects.create_user(email="ravi@example.in", password=STRONG)
    known = Client().post("/password-reset", {"email": "ravi@example.in"})
    unknown = Client().post("/password-reset", {"email": "nobody@example.in"})
    assert (known.status_code, known.url) == (unknown.status_code, unknown.url)
    assert len(mail.outbox) == 1


def test_registering_a_taken_address_costs_the_same_hash():
    registered("asha@example.in")
    before = CountingHasher.encoded
    taken = api().post("/auth/register", {"email": "asha@example.in", "password": "another long one"})
    assert taken.status_code == 409 and error(taken)["code"] == "already_registered"
    assert CountingHasher.encoded == before + 1


# --- 5. The admin -----------------------------------------------------------------------------------

def test_the_admin_sign_in_is_throttled_too(settings):
    settings.AVATAR_RATE_LOGINS_PER_HOUR = 2
    User.objects.create_superuser("root@example.in", STRONG)
    attacker = Client(REMOTE_ADDR="203.0.113.30")
    answers = [attacker.post("/admin/login/", {"username": "root@example.in", "password": f"guess {i}"})
               for i in range(3)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert_429(answers[2])
    assert "text/html" in answers[2]["Content-Type"]
    # The admin, from elsewhere, still gets in.
    admin = Client(REMOTE_ADDR="198.51.100.30")
    assert admin.post("/admin/login/", {"username": "root@example.in", "password": STRONG}).status_code == 302
    assert "_auth_user_id" in admin.session


# --- 6. Tokens that expire ---------------------------------------------------------------------------

def test_an_idle_token_expires(settings):
    settings.AVATAR_TOKEN_IDLE_DAYS = 30
    token = registered()
    me = api(token=token)
    assert me.get("/me").status_code == 200
    row = ApiToken.objects.get()
    ApiToken.objects.filter(id=row.id).update(last_used_at=timezone.now() - timedelta(days=29))
    forget_token(row.key_hash)
    assert me.get("/me").status_code == 200  # 29 days idle: still good, and now fresh again
    ApiToken.objects.filter(id=row.id).update(last_used_at=timezone.now() - timedelta(days=31))
    forget_token(row.key_hash)
    response = me.get("/me")
    assert response.status_code == 401 and error(response)["code"] == "not_authenticated"
    assert not ApiToken.objects.exists()


def updates_of_tokens(queries) -> int:
    return sum(1 for q in queries if q["sql"].startswith("UPDATE") and "accounts_apitoken" in q["sql"])


def test_a_used_token_is_refreshed_at_most_once_a_minute():
    token = registered()
    me = api(token=token)
    with CaptureQueriesContext(connection) as fresh:
        for _ in range(5):
            assert me.get("/me").status_code == 200
    assert updates_of_tokens(fresh.captured_queries) == 0  # issued just now: nothing to write

    row = ApiToken.objects.get()
    ApiToken.objects.filter(id=row.id).update(last_used_at=timezone.now() - timedelta(minutes=2))
    forget_token(row.key_hash)
    with CaptureQueriesContext(connection) as stale:
        for _ in range(5):
            assert me.get("/me").status_code == 200
    assert updates_of_tokens(stale.captured_queries) == 1
    assert timezone.now() - ApiToken.objects.get().last_used_at < timedelta(seconds=10)


# --- 7. Sign out everywhere ------------------------------------------------------------------------

def signed_in_site(email: str, ip: str) -> Client:
    site = Client(REMOTE_ADDR=ip)
    assert site.post("/sign-in", {"email": email, "password": STRONG}).status_code == 302
    assert site.get("/account").status_code == 200
    return site


def test_sign_out_everywhere_through_the_api_ends_every_token_and_session():
    first = registered("asha@example.in")
    second = api("198.51.100.40").post("/auth/login", {"email": "asha@example.in", "password": STRONG}).json()["token"]
    sites = [signed_in_site("asha@example.in", f"198.51.100.{41 + i}") for i in range(2)]
    other = registered("ravi@example.in", ip="192.0.2.251")

    assert api(token=first).post("/auth/logout-everywhere").status_code == 204
    for token in (first, second):
        assert api(token=token).get("/me").status_code == 401
    for site in sites:
        assert site.get("/account").status_code == 302  # back to the consent page: signed out
    assert api(token=other).get("/me").status_code == 200  # nobody else's
    # The password still works.
    assert api("198.51.100.43").post("/auth/login", {"email": "asha@example.in", "password": STRONG}).status_code == 200


def test_sign_out_everywhere_on_the_site_with_a_localised_confirmation():
    token = registered("asha@example.in")
    site, other = (signed_in_site("asha@example.in", f"198.51.100.{50 + i}") for i in range(2))
    page = site.get("/account").content.decode()
    assert 'action="/account/sign-out-everywhere"' in page
    answer = site.post("/account/sign-out-everywhere", headers={"Accept-Language": "hi"})
    assert answer.status_code == 302 and answer.url == "/sign-in"
    landing = site.get(answer.url, headers={"Accept-Language": "hi"}).content.decode()
    assert "You are signed out everywhere." not in landing, "no Hindi translation yet"
    assert 'class="messages"' in landing
    assert other.get("/account").status_code == 302
    assert site.get("/account").status_code == 302
    assert api(token=token).get("/me").status_code == 401


def test_a_guest_cannot_sign_out_everywhere():
    guest = new_guest()
    response = guest.post("/auth/logout-everywhere")
    assert response.status_code == 409 and error(response)["code"] == "guest_account"
    assert guest.get("/me").status_code == 200
    site = Client()
    assert site.post("/consent", {"adult": "yes", "agree": "yes"}).status_code == 302
    assert "sign-out-everywhere" not in site.get("/account").content.decode()
    assert site.post("/account/sign-out-everywhere").status_code == 409


# --- Degrade, don't fall over -------------------------------------------------------------------------

def test_a_limiter_whose_cache_is_down_lets_requests_through_and_logs_it(settings, caplog, monkeypatch):
    from avatarapp.accounts import tokens
    from avatarapp.lib import ratelimit

    token = registered("asha@example.in")
    monkeypatch.setattr(ratelimit.breaker, "paused_until", 0.0)  # (another test may have paused the limits)
    monkeypatch.setattr(tokens.breaker, "paused_until", 0.0)
    settings.CACHES = {"default": {"BACKEND": "tests.test_account_security.BrokenCache"}}
    settings.AVATAR_RATE_GUESTS_PER_HOUR = 1
    settings.AVATAR_RATE_LOGINS_PER_HOUR = 1
    with caplog.at_level(logging.WARNING):
        assert [api().post("/auth/guest").status_code for _ in range(2)] == [201, 201]
        wrong = [api().post("/auth/login", {"email": "asha@example.in", "password": "nope"}).status_code
                 for _ in range(2)]
        assert wrong == [401, 401]
        assert api().post("/auth/login", {"email": "asha@example.in", "password": STRONG}).status_code == 200
        assert api().post("/auth/register", {"email": "ravi@example.in", "password": STRONG}).status_code == 201
        assert api(token=token).get("/me").status_code == 200  # tokens come from the database
        assert Client().post("/password-reset", {"email": "asha@example.in"}).status_code == 302
    assert any("rate limit" in r.getMessage() and "unreachable" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
