"""A deploy that passes its own checks (issue 13, item 6).

`manage.py check --deploy` with production settings reports nothing; every page carries a
Content-Security-Policy with nothing inline, and a Permissions-Policy; every cookie is
SameSite=Lax; what is private to a user (API JSON, photos, pictures, exports) is never kept by
a cache, while public share pages are; and the templates hold nothing a strict CSP would block,
so a regression fails here before any browser runs. The browser tests (tests/browser.py) fail
on any CSP violation; the last tests here prove that guard sees one, and run Django's admin
under the same policy.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser import browser, phone, site  # noqa: F401
from tests.helpers import new_guest, store_picture

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "avatarapp"
STATIC_JS = ROOT / "static" / "js"
ADMIN_EMAIL, ADMIN_PASSWORD = "ops@example.in", "Ops-" + secrets.token_urlsafe(18)
# What would point the child process at this test run's database, broker, files or settings.
SHARED = ("DATABASE_URL", "REDIS_URL", "DATABASE_URL_FILE", "REDIS_URL_FILE", "SECRET_KEY", "SECRET_KEY_FILE",
          "AVATAR_MEDIA_ROOT", "AVATAR_BROKER_DIR", "AVATAR_BEAT_SCHEDULE", "AVATAR_TEST_SQLITE", "DEBUG",
          "SITE_URL", "ALLOWED_HOSTS", "AVATAR_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
          "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
          "DJANGO_ALLOW_ASYNC_UNSAFE")  # set by the browser tests while chromium runs


def production_env(var_dir: Path, **variables: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in SHARED}
    return {**clean, "DJANGO_SETTINGS_MODULE": "avatarapp.settings", "AVATAR_VAR_DIR": str(var_dir),
            "DEBUG": "False", "SECRET_KEY": secrets.token_urlsafe(48), "SITE_URL": "https://chhavi.example.in",
            "ALLOWED_HOSTS": "chhavi.example.in", **variables}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


# --- check --deploy --------------------------------------------------------------------------

@pytest.mark.parametrize("proxy", [{"AVATAR_PROXY_SSL_HEADER": "X-Forwarded-Proto"}, {}],
                         ids=["behind-a-proxy", "tls-in-process"])
def test_check_deploy_reports_nothing_with_production_settings(tmp_path, proxy):
    result = manage(production_env(tmp_path / "var", **proxy), "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output and "ERRORS" not in output, output
    assert "System check identified no issues (0 silenced)." in output, output


SHOW = ("import django; django.setup(); from django.conf import settings as s; "
        "print(repr((s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SECURE_HSTS_PRELOAD, s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.LANGUAGE_COOKIE_SECURE)))")


def show(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_https_settings_follow_site_url_and_can_be_tuned(tmp_path):
    var = tmp_path / "var"
    https = show(production_env(var, AVATAR_PROXY_SSL_HEADER="X-Forwarded-Proto"))
    assert https.stdout.strip() == repr((True, 31536000, True, True, ("HTTP_X_FORWARDED_PROTO", "https"),
                                         True, True, True)), https.stderr[-2000:]
    plain = show(production_env(var, SITE_URL="http://127.0.0.1:8000", ALLOWED_HOSTS="127.0.0.1"))
    assert plain.stdout.strip() == repr((False, 0, True, True, None, False, False, False)), plain.stderr[-2000:]
    tuned = show(production_env(var, SECURE_SSL_REDIRECT="False", SECURE_HSTS_SECONDS="300",
                                SECURE_HSTS_PRELOAD="False", SECURE_HSTS_INCLUDE_SUBDOMAINS="False"))
    assert tuned.stdout.strip() == repr((False, 300, False, False, None, True, True, True)), tuned.stderr[-2000:]


@pytest.mark.parametrize("name, value", [
    ("AVATAR_PROXY_SSL_HEADER", "X-Forwarded-Proto: https"),
    ("AVATAR_PROXY_SSL_HEADER", "X_Forwarded_Pröto"),
    ("SECURE_HSTS_SECONDS", "-1"),
    ("SECURE_HSTS_SECONDS", "a year"),
    ("SECURE_SSL_REDIRECT", "yes"),
    ("SECURE_HSTS_PRELOAD", "1"),
])
def test_a_bad_https_setting_stops_the_process_naming_it(tmp_path, name, value):
    result = show(production_env(tmp_path / "var", **{name: value}))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ") and name in last_line, last_line


def test_the_development_key_is_refused_by_check_deploy(tmp_path):
    env = production_env(tmp_path / "var", SECRET_KEY="dev-only-insecure-key-change-me-in-production")
    result = manage(env, "check", "--deploy")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr, result.stderr[-2000:]


@pytest.mark.django_db
def test_behind_a_proxy_plain_http_is_redirected_and_https_gets_hsts(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    plain = Client().get("/consent")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/consent"
    assert Client().get("/healthz").status_code == 200, "probes speak plain HTTP to the process"
    secure = Client().get("/consent", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


# --- headers on the live site ------------------------------------------------------------------

def policy(response) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']} has no Content-Security-Policy"
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.fixture
def shared_picture(packs):
    api = new_guest()
    photo, _, output = store_picture(api)
    link = api.post(f"/outputs/{output.id}/shares", {})
    assert link.status_code == 201, link.content
    return api, photo, output, link.json()["token"]


@pytest.mark.django_db
def test_every_kind_of_page_has_a_strict_csp_and_a_permissions_policy(shared_picture):
    api, _, output, token = shared_picture
    staff = Client()
    from avatarapp.accounts.models import User

    staff.force_login(User.objects.create_superuser(ADMIN_EMAIL, ADMIN_PASSWORD))
    pages = [Client().get("/"), Client().get("/consent"), Client().get(f"/s/{token}"), Client().get("/no-such-page"),
             Client().get("/admin/login/"), staff.get("/admin/"), staff.get("/admin/accounts/user/"),
             staff.get(f"/admin/accounts/user/{output.user_id}/change/"), api.get("/me")]
    for response in pages:
        where = response.request["PATH_INFO"]
        assert response.status_code in (200, 404), where
        directives = policy(response)
        assert "'unsafe-inline'" not in response["Content-Security-Policy"], where
        assert "'unsafe-eval'" not in response["Content-Security-Policy"], where
        assert directives["default-src"] == ["'self'"], where
        assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"], where
        assert directives["img-src"] == ["'self'", "data:", "blob:"], where
        for name in ("connect-src", "manifest-src", "worker-src", "form-action"):
            assert directives[name] == ["'self'"], (where, name)
        for name in ("frame-ancestors", "base-uri", "object-src"):
            assert directives[name] == ["'none'"], (where, name)
        features = dict(item.split("=", 1) for item in response["Permissions-Policy"].split(", "))
        for feature in ("camera", "microphone", "geolocation", "payment", "usb", "browsing-topics"):
            assert features[feature] == "()", (where, feature)
        assert "web-share" not in features, "the share button needs the Web Share API"


@pytest.mark.django_db
def test_every_cookie_the_site_sets_is_samesite_lax(packs):
    browser_like = Client()
    cookies = {}
    for response in (browser_like.get("/"),  # csrftoken
                     browser_like.post("/consent", {"adult": "yes", "agree": "yes", "next": "/upload"}),  # session
                     browser_like.post("/i18n/setlang/", {"language": "hi", "next": "/"})):  # language
        cookies.update(response.cookies)
    expected = {settings.CSRF_COOKIE_NAME, settings.SESSION_COOKIE_NAME, settings.LANGUAGE_COOKIE_NAME}
    assert expected <= set(cookies), sorted(cookies)
    for name, morsel in cookies.items():
        assert morsel["samesite"] == "Lax", name
    assert cookies[settings.LANGUAGE_COOKIE_NAME]["httponly"]


def no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return {"private", "no-store"} <= directives


@pytest.mark.django_db
def test_private_answers_are_never_cached_and_share_pages_are(shared_picture):
    api, photo, output, token = shared_picture
    owner_site = Client()
    owner_site.post("/consent", {"adult": "yes", "agree": "yes"})
    private = {
        "API JSON": api.get("/me"),
        "API list": api.get("/outputs"),
        "API error": api.get("/jobs/00000000-0000-0000-0000-000000000000"),
        "API schema": api.get("/openapi.json"),
        "photo": api.client.get(photo["url"], headers=api.headers()),
        "picture": api.client.get(reverse("api-v1:output_image", args=[output.id]), headers=api.headers()),
        "thumbnail": api.client.get(reverse("api-v1:output_thumbnail", args=[output.id]), headers=api.headers()),
        "API export": api.get("/me/export"),
        "site export": owner_site.get(reverse("export_data")),
    }
    for what, response in private.items():
        assert response.status_code in (200, 404), (what, response.status_code)
        assert no_store(response), (what, response.get("Cache-Control"))
    public = {"share page": Client().get(f"/s/{token}"), "share image": Client().get(f"/s/{token}/image"),
              "share card": Client().get(f"/s/{token}/card.jpg"), "landing": Client().get("/")}
    for what, response in public.items():
        assert response.status_code == 200, what
        assert "no-store" not in response.get("Cache-Control", ""), (what, response.get("Cache-Control"))


# --- nothing inline in the templates ------------------------------------------------------------

TEMPLATE_TAG = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)
HTML_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)\b([^>]*)>", re.S)
INLINE_ATTRIBUTE = re.compile(r"""(?:^|\s)(style|on[a-z]+)\s*=|=\s*["']?\s*javascript:""", re.I)
DATA_BLOCK = re.compile(r"""\btype\s*=\s*["']?application/(ld\+)?json""", re.I)


def inline_code(html: str) -> list[str]:
    """What a CSP without 'unsafe-inline' would block: inline scripts, <style>, style= and on*= attributes."""
    found = []
    for tag in HTML_TAG.finditer(TEMPLATE_TAG.sub(" ", html)):
        name, attributes = tag.group(1).lower(), tag.group(2)
        if name == "script" and not re.search(r"\bsrc\s*=", attributes) and not DATA_BLOCK.search(attributes):
            found.append(f"inline <script{attributes}>")
        if name == "style":
            found.append("<style> element")
        found.extend(f"<{name}> attribute {m.group(0).strip()}" for m in INLINE_ATTRIBUTE.finditer(attributes))
    return found


def test_the_scanner_sees_what_a_strict_csp_blocks():
    assert inline_code('<script>alert(1)</script><script src="/a.js"></script>') == ["inline <script>"]
    assert inline_code('<p style="color:red">') and inline_code("<button onclick='x()'>")
    assert inline_code("<style>p{}</style>") and inline_code('<a href="javascript:void(0)">')
    assert inline_code('<script type="application/json">{}</script>') == []
    assert inline_code("{% blocktranslate with style=name %}{{ style }}{% endblocktranslate %}") == []


def test_no_template_holds_inline_script_style_or_event_handlers():
    templates = sorted(p for p in TEMPLATES.rglob("*.html") if "templates" in p.parts)
    assert len(templates) >= 15, templates
    offenders = [f"{path.relative_to(ROOT)}: {what}" for path in templates for what in inline_code(path.read_text())]
    assert not offenders, "a strict Content-Security-Policy blocks these:\n" + "\n".join(offenders)


def test_no_script_writes_style_attributes_or_evaluates_strings():
    """CSSOM (element.style.x = …, the hidden property) is allowed; a style attribute or eval is not."""
    forbidden = re.compile(r"""setAttribute\(\s*["']style|\.style\.cssText|\beval\(|new Function\(|"""
                           r"""set(?:Timeout|Interval)\(\s*["'`]|innerHTML\s*=\s*[^;]*(?:style|on[a-z]+)=""")
    scripts = [*STATIC_JS.rglob("*.js"), TEMPLATES / "templates" / "front" / "sw.js"]
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path in scripts
                 for m in forbidden.finditer(path.read_text())]
    assert not offenders, offenders


# --- the browser guard, and the admin under the policy ---------------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_browser_guard_notices_a_csp_violation(phone):
    device = phone()
    device.page.goto("/")
    device.page.evaluate("() => document.body.setAttribute('style', 'background: red')")
    device.page.wait_for_function("() => window.__cspViolations.length > 0")
    with pytest.raises(AssertionError, match="style-src"):
        device.assert_no_csp_violations()
    device.csp_violations.clear()  # seen; the fixture's own check at the end must pass


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_works_under_the_same_policy(phone):
    from avatarapp.accounts.models import User

    User.objects.create_superuser(ADMIN_EMAIL, ADMIN_PASSWORD)
    device = phone()
    page = device.page
    page.goto("/admin/")
    page.locator("#id_username").fill(ADMIN_EMAIL)
    page.locator("#id_password").fill(ADMIN_PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page.locator("#site-name")).to_be_visible()
    page.goto("/admin/accounts/user/")
    expect(page.locator("#result_list")).to_be_visible()
    page.locator("#result_list tbody a").first.click()
    # The date widgets are drawn by the admin's scripts: the calendar opens.
    page.locator(".datetimeshortcuts a[id^=calendarlink]").first.click()
    expect(page.locator(".calendarbox").first).to_be_visible()
    # Every list the admin has (the moderation queue too), drawn under the policy.
    from django.contrib import admin

    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = page.goto(url)
        assert response is not None and response.status == 200, (url, response and response.status)
    device.assert_no_csp_violations()
