"""What each page costs a phone on its first visit, and its Lighthouse mobile scores.

    .venv/bin/python -m bench --only pages                        # as part of `make bench`
    .venv/bin/python -m bench.pages                               # starts the app as `make run` does
    .venv/bin/python -m bench.pages --base-url http://127.0.0.1:8000 --lang en

Without --base-url it runs `manage.py serve` (web server and worker) on a free port,
with its database, broker and files in a temporary folder (the demo model and packs
in var/ are reused), so nothing of yours in var/ is touched. A phone goes through
the flow once to get a session, a picture and a share link; then every page is
opened in a fresh phone context (empty cache, first visit) and the bytes the browser
itself reports as transferred are summed, user images excepted. Then, if Lighthouse
is installed (`npm install --no-save lighthouse@12` puts it in node_modules/; 12.x is
the last line that runs on Node 20; or pass --install-lighthouse), it scores landing,
upload and result pages on its default mobile settings, in a chromium that holds the
session cookie. The tables are printed and written to var/page-metrics.json, the full
Lighthouse reports to var/lighthouse/<page>.json. Exit status 1 when a page is over budget.
In `python -m bench` the figures join the others in var/bench.json; its short run skips
Lighthouse. Chromium is Debian's (`make browser-deps`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from avatarapp.ops.processes import LoggedProcess, free_port, url_answers, wait_until
from bench.figures import Figure
from bench.phone import CHROMIUM, CHROMIUM_ARGS, PHONE

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "tests" / "fixtures" / "portrait.jpg"


BUDGET_KB = 60
LIGHTHOUSE_BUDGET = 95
LIGHTHOUSE_PAGES = ("landing", "upload", "result")
# The user's own pictures: not part of the page budget.
USER_IMAGE = re.compile(r"^/api/v1/.+/(image|thumbnail)$|^/s/[^/]+/(image|card\.jpg)$")
PYTHON = sys.executable


# Settings that would point the scratch app at your database, broker or files: it uses its own.
SHARED_ENV = ("DATABASE_URL", "REDIS_URL", "AVATAR_MEDIA_ROOT", "AVATAR_BROKER_DIR", "AVATAR_BEAT_SCHEDULE",
              "AWS_STORAGE_BUCKET_NAME")


def wait_until_ready(base_url: str, process: LoggedProcess | None = None, timeout: float = 180) -> None:
    wait_until(lambda: url_answers(base_url + "/readyz"), f"{base_url}/readyz", timeout, process)


@contextmanager
def running_app(log_path: Path) -> Iterator[str]:
    """`make run` in a scratch var/ folder: migrate, prepare the demo packs, collect static, serve."""
    scratch = Path(tempfile.mkdtemp(prefix="chhavi-measure-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in SHARED_ENV}
    env.update(AVATAR_VAR_DIR=str(scratch), PORT=str(port), SITE_URL=base_url,
               AVATAR_BASE_MODEL=os.getenv("AVATAR_BASE_MODEL", str(ROOT / "var" / "models" / "demo")),
               AVATAR_PACKS_DIR=os.getenv("AVATAR_PACKS_DIR", str(ROOT / "var" / "packs")))
    if not (Path(env["AVATAR_BASE_MODEL"]) / "model_index.json").exists():
        raise SystemExit("the demo model is missing: run `make prepare` first")
    try:
        for command in (["migrate", "--noinput", "-v0"], ["register_packs"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        # `serve` stops its web server and worker on SIGTERM; stopping the group catches any straggler.
        with LoggedProcess([PYTHON, "manage.py", "serve"], log_path, env=env, cwd=ROOT) as app:
            wait_until_ready(base_url, app)
            yield base_url
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class Visit:
    """One first visit in a fresh context: every request the browser makes and its transferred bytes."""

    def __init__(self, browser, base_url: str, locale: str, cookies: list[dict]):
        self.base_url = base_url
        self.context = browser.new_context(**PHONE, locale=locale, base_url=base_url)
        self.context.set_default_timeout(30_000)
        if cookies:
            self.context.add_cookies(cookies)
        self.requests: list[dict] = []
        self.context.on("requestfinished", self.finished)
        self.context.on("requestfailed", lambda r: self.requests.append({"url": r.url, "bytes": 0, "failed": True}))
        self.page = self.context.new_page()

    def finished(self, request) -> None:
        # Chromium's encodedDataLength, split into headers and body. An answer from the
        # HTTP cache comes out as body = -headers, that is 0 bytes on the wire.
        sizes = request.sizes()
        body = sizes["responseBodySize"]
        response = request.response()
        if body == 0 and response is not None:
            # Chromium reports no body for the service worker's own script: take its Content-Length.
            body = int(response.headers.get("content-length") or 0)
        self.requests.append({
            "url": request.url,
            "bytes": max(0, sizes["responseHeadersSize"] + body),
            "service_worker": request.service_worker is not None,
        })

    def open(self, path: str) -> dict:
        self.page.goto(path, wait_until="load")
        # The service worker installs after `load` and caches the shell: part of a first visit too.
        self.page.wait_for_function(
            "() => !('serviceWorker' in navigator) || navigator.serviceWorker.ready.then(() => true)")
        self.page.wait_for_load_state("networkidle")
        own = urlsplit(self.base_url).netloc
        counted = [r for r in self.requests if urlsplit(r["url"]).scheme in ("http", "https")
                   and not USER_IMAGE.match(urlsplit(r["url"]).path)]
        third_party = sorted({r["url"] for r in self.requests
                              if urlsplit(r["url"]).scheme in ("http", "https") and urlsplit(r["url"]).netloc != own})
        self.context.close()
        return {
            "path": path,
            "requests": len(counted),
            "bytes": sum(r["bytes"] for r in counted),
            "user_image_bytes": sum(r["bytes"] for r in self.requests if USER_IMAGE.match(urlsplit(r["url"]).path)),
            "third_party": third_party,
            "resources": sorted(({"path": urlsplit(r["url"]).path, "bytes": r["bytes"],
                                  "service_worker": r.get("service_worker", False)} for r in counted),
                                key=lambda r: -r["bytes"]),
        }


def make_a_picture(browser, base_url: str, locale: str) -> tuple[dict[str, str], list[dict]]:
    """Go through the flow once, as a phone would; returns each page's path and the session cookies."""
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context(**PHONE, locale=locale, base_url=base_url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    paths = {"landing": "/", "consent": "/consent"}

    def arrive(name: str, pattern: str, timeout: float = 60_000) -> None:
        try:
            page.wait_for_url(re.compile(pattern), timeout=timeout)
        except PlaywrightError as e:  # a timeout, or the page or browser gone
            raise SystemExit(f"the {name} page did not come (at {page.url}): {e}") from None
        paths[name] = urlsplit(page.url).path

    page.goto("/consent?next=/upload")
    page.locator("input[name=adult]").check()
    page.locator("input[name=agree]").check()
    page.locator("main button[type=submit]").click()
    arrive("upload", r"/upload$")
    page.locator("#image").set_input_files(PORTRAIT)
    page.locator("#upload-form button[type=submit]").click()
    arrive("style", r"/photos/[0-9a-f-]+/style$")
    page.locator("input[name=pack][value=avatar]").check()
    page.locator("main button[type=submit]").click()
    arrive("progress", r"/jobs/[0-9a-f-]+$")
    page.locator("#job-results img").first.wait_for(timeout=180_000)  # a cold worker loads its model first
    page.locator("#job-results a").first.click()
    arrive("result", r"/results/[0-9a-f-]+$")
    page.locator("form[action$='/share'] button").click()
    page.locator("#share-link").wait_for()
    paths["gallery"] = "/gallery"
    paths["share"] = urlsplit(page.locator("#share-link").input_value()).path
    cookies = context.cookies()
    context.close()
    order = ["landing", "consent", "upload", "style", "progress", "gallery", "result", "share"]
    return {name: paths[name] for name in order}, cookies


def measure_bytes(base_url: str, locale: str) -> tuple[list[dict], dict[str, str], list[dict]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            paths, cookies = make_a_picture(browser, base_url, locale)
            # Landing, consent and share page are first met without a session.
            anonymous = {"landing", "consent", "share"}
            rows = []
            for name, path in paths.items():
                visit = Visit(browser, base_url, locale, [] if name in anonymous else cookies)
                rows.append({"page": name, **visit.open(path)})
        finally:
            browser.close()
    return rows, paths, cookies


def lighthouse_command(install: bool) -> list[str] | None:
    local = ROOT / "node_modules" / ".bin" / "lighthouse"
    if not local.exists() and install and shutil.which("npm"):
        subprocess.run(["npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
                        "lighthouse@12"], cwd=ROOT, check=True)
    if local.exists():
        return [str(local)]
    if shutil.which("lighthouse"):
        return ["lighthouse"]
    return None


def run_lighthouse(command: list[str], url: str, cookies: list[dict], report: Path) -> dict:
    """Lighthouse's defaults: mobile form factor, simulated slow 4G and 4x CPU slowdown.

    Lighthouse drives a fresh headless chromium started here with a debugging port, so
    that the session cookie can sit in its cookie jar: a Cookie header given with
    --extra-headers reaches the page but not its images, which then answer 401.
    Lighthouse clears caches and service workers before it loads the page, never cookies.
    """
    from playwright.sync_api import sync_playwright

    port = free_port()
    report.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        chromium = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, no_viewport=True,
            args=[*CHROMIUM_ARGS, f"--remote-debugging-port={port}"])
        try:
            if cookies:
                chromium.add_cookies(cookies)
            result = subprocess.run(
                [*command, url, f"--port={port}", "--only-categories=performance,accessibility",
                 "--output=json", f"--output-path={report}", "--quiet"],
                env=dict(os.environ, CHROME_PATH=CHROMIUM), capture_output=True, text=True, timeout=300)
            if result.returncode != 0 or not report.exists():
                return {"error": (result.stderr or result.stdout).strip()[-500:]}
            data = json.loads(report.read_text())
        finally:
            chromium.close()
    audits = data["audits"]
    failed = sorted(name for name, audit in audits.items()
                    if audit.get("score") is not None and audit["score"] < 0.9
                    and audit.get("scoreDisplayMode") in ("binary", "numeric", "metricSavings"))
    broken = sorted({item["url"] for item in audits.get("network-requests", {}).get("details", {}).get("items", [])
                     if item.get("statusCode", 200) >= 400})
    return {
        "performance": round(data["categories"]["performance"]["score"] * 100),
        "accessibility": round(data["categories"]["accessibility"]["score"] * 100),
        "first_contentful_paint_ms": round(audits["first-contentful-paint"]["numericValue"]),
        "largest_contentful_paint_ms": round(audits["largest-contentful-paint"]["numericValue"]),
        "total_blocking_time_ms": round(audits["total-blocking-time"]["numericValue"]),
        "cumulative_layout_shift": round(audits["cumulative-layout-shift"]["numericValue"], 3),
        "total_byte_weight": round(audits["total-byte-weight"]["numericValue"]),
        "audits_below_0_9": failed,
        "failed_requests": broken,
    }


def print_bytes(rows: list[dict]) -> None:
    print(f"\nFirst visit, transferred bytes (user images excluded), budget {BUDGET_KB} KB")
    print(f"{'page':<10} {'path':<48} {'requests':>8} {'KB':>7}  {'budget':<6}")
    for row in rows:
        kb = row["bytes"] / 1024
        verdict = "ok" if kb <= BUDGET_KB and not row["third_party"] else "OVER" if kb > BUDGET_KB else "3RD-PARTY"
        print(f"{row['page']:<10} {row['path'][:48]:<48} {row['requests']:>8} {kb:>7.1f}  {verdict}")
        for url in row["third_party"]:
            print(f"{'':<10} third-party request: {url}")


def print_lighthouse(scores: dict[str, dict]) -> None:
    print(f"\nLighthouse mobile (simulated throttling), budget {LIGHTHOUSE_BUDGET}")
    print(f"{'page':<10} {'performance':>11} {'accessibility':>13} "
          f"{'FCP ms':>7} {'LCP ms':>7} {'TBT ms':>7} {'CLS':>6}")
    for name, s in scores.items():
        if "error" in s:
            print(f"{name:<10} failed: {s['error']}")
            continue
        print(f"{name:<10} {s['performance']:>11} {s['accessibility']:>13} "
              f"{s['first_contentful_paint_ms']:>7} {s['largest_contentful_paint_ms']:>7} "
              f"{s['total_blocking_time_ms']:>7} {s['cumulative_layout_shift']:>6}")
        if s["audits_below_0_9"]:
            print(f"{'':<10} audits below 0.9: {', '.join(s['audits_below_0_9'])}")
        for url in s["failed_requests"]:
            print(f"{'':<10} failed request: {url}")


def lighthouse_scores(command: list[str], base_url: str, lang: str, paths: dict[str, str],
                      cookies: list[dict]) -> dict[str, dict]:
    # The reader's language through the switcher's cookie: Lighthouse sends its own Accept-Language.
    language = {"name": "chhavi_lang", "value": lang, "url": base_url}
    scores: dict[str, dict] = {}
    for name in LIGHTHOUSE_PAGES:
        jar = [language] + ([] if name == "landing" else cookies)
        report = ROOT / "var" / "lighthouse" / f"{name}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(2):  # Lighthouse now and then fails to record a trace (NO_NAVSTART)
            scores[name] = run_lighthouse(command, urljoin(base_url, paths[name]), jar, report)
            if "error" not in scores[name]:
                break
    return scores


def measure(base_url: str | None, lang: str, lighthouse: list[str] | None, output: Path) -> dict:
    """Bytes of every page (and Lighthouse scores with a `lighthouse` command), printed and written to `output`.

    Without `base_url`, the app is started in a scratch folder for the measurement.
    """
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: run `make browser-deps` (Debian's chromium)")
    locale = f"{lang}-IN"
    with (nullcontext(base_url.rstrip("/")) if base_url
          else running_app(ROOT / "var" / "measure-serve.log")) as base_url:
        wait_until_ready(base_url)
        rows, paths, cookies = measure_bytes(base_url, locale)
        print_bytes(rows)
        scores = lighthouse_scores(lighthouse, base_url, lang, paths, cookies) if lighthouse else {}
        if scores:
            print_lighthouse(scores)

    over = [r["page"] for r in rows if r["bytes"] > BUDGET_KB * 1024 or r["third_party"]]
    low = [name for name, s in scores.items()
           if "error" in s or min(s["performance"], s["accessibility"]) < LIGHTHOUSE_BUDGET]
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base_url": base_url,
        "language": lang,
        "phone": {k: PHONE[k] for k in ("viewport", "device_scale_factor", "user_agent")},
        "budget_kb": BUDGET_KB,
        "pages": rows,
        "lighthouse_budget": LIGHTHOUSE_BUDGET,
        "lighthouse": scores,
        "over_budget": over + low,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"\nWritten to {output}")
    if over or low:
        print(f"Over budget: {', '.join(over + low)}")
    return result


def page_figures(result: dict, lighthouse_missing: str | None) -> list[Figure]:
    """The page figures beside their budgets, for var/bench.json."""
    found = []
    for row in result["pages"]:
        kb = row["bytes"] / 1024
        found.append(Figure(f"first visit, {row['page']} page ({result['language']}), user images excluded", kb,
                            "KB", f"<= {BUDGET_KB} KB, no third-party requests",
                            kb <= BUDGET_KB and not row["third_party"]))
    budget = f">= {LIGHTHOUSE_BUDGET}"
    for name in LIGHTHOUSE_PAGES:
        for category in ("performance", "accessibility"):
            label = f"Lighthouse mobile, {name} page, {category}"
            score = result["lighthouse"].get(name)
            if score is None:
                found.append(Figure.not_measured(label, budget, lighthouse_missing or "no score"))
            elif "error" in score:
                found.append(Figure(label, None, "", budget, False, f"Lighthouse failed: {score['error'][:80]}"))
            else:
                found.append(Figure(label, score[category], "", budget, score[category] >= LIGHTHOUSE_BUDGET))
    return found


def run(short: bool) -> list[Figure]:
    """The pages suite of `python -m bench`: bytes always, Lighthouse in the full run when it is installed."""
    from rich.console import Console

    lighthouse = None if short else lighthouse_command(install=False)
    missing = ("short run" if short else None if lighthouse
               else "Lighthouse not installed (npm install --no-save lighthouse@12)")
    try:
        result = measure(None, "hi", lighthouse, ROOT / "var" / "page-metrics.json")
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the other suites' figures still get printed
        Console(stderr=True).print_exception()
        first_line = (str(e).splitlines() or [""])[0][:80]
        return [Figure(f"pages bench failed: {type(e).__name__}: {first_line}", 1, "", "0", False)]
    return page_figures(result, missing)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="measure a running site instead of starting one")
    parser.add_argument("--lang", default="hi", help="the reader's language (default hi)")
    parser.add_argument("--no-lighthouse", action="store_true", help="only count bytes")
    parser.add_argument("--install-lighthouse", action="store_true",
                        help="npm install lighthouse@12 into node_modules/ when it is missing")
    parser.add_argument("--output", default=str(ROOT / "var" / "page-metrics.json"))
    args = parser.parse_args()
    lighthouse = None if args.no_lighthouse else lighthouse_command(args.install_lighthouse)
    if not lighthouse and not args.no_lighthouse:
        print("Lighthouse is not installed: `npm install --no-save lighthouse@12` (or pass --install-lighthouse).")
    result = measure(args.base_url, args.lang, lighthouse, Path(args.output))
    return 1 if result["over_budget"] else 0


if __name__ == "__main__":
    sys.exit(main())
