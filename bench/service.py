"""Service benchmarks: queue pickup, GET /api/v1/jobs/{id} under load, web process memory.

Everything runs against processes started here and stopped at the end: a real
Celery worker (``worker_command``), gunicorn (``web_command``), ``wrk`` as the
load generator on 127.0.0.1 (``make bench-deps`` installs it). The status endpoint's
budget is two figures from two wrk runs: throughput at 32 connections, and p95
latency at 8 (at 32 connections on two shared cores, queueing alone puts even
the mean above 40 ms). The bench never touches what ``make run`` uses:

* PostgreSQL database ``chhavi_bench`` (created, migrated, dropped at the end),
* Redis database 8 (flushed at the start and at the end, and only that one),
* media, broker folders, beat schedule and the embedded SQLite file under
  ``var/bench-tmp/`` (removed at the end).

Rows are created by child processes of this module (``python -m
bench.service --pickup N`` and friends) started with the same
environment as the worker, so they talk to the same database and broker; the
parent process never opens the bench databases itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from avatarapp.ops.processes import LoggedProcess, free_port, stop_group, web_command, worker_command
from bench.figures import Figure

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "tests" / "fixtures" / "portrait.jpg"

PG_DSN = os.getenv("AVATAR_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
PG_DB = "chhavi_bench"
REDIS_BENCH_URL = os.getenv("AVATAR_BENCH_REDIS", "redis://127.0.0.1:6379/8")

# Settings the bench decides itself; everything else is taken from the caller's environment.
OWN_ENV = ("DATABASE_URL", "REDIS_URL", "AVATAR_MEDIA_ROOT", "AVATAR_BROKER_DIR", "AVATAR_BEAT_SCHEDULE",
           "AWS_STORAGE_BUCKET_NAME", "DEBUG")

PICKUP_BUDGET_MS = {"redis": 50.0, "embedded": 100.0}
API_RPS_BUDGET = 500.0
API_P95_BUDGET_MS = 50.0
WEB_RSS_BUDGET_MB = 150.0

# Gunicorn on 2 cores: one process per core, threads to overlap the database round trips.
WEB_WORKERS = int(os.getenv("AVATAR_BENCH_WEB_WORKERS", "2"))
WRK_THREADS = 2
# Throughput is measured at 32 connections; latency at 8, with little queueing in front of
# the 2 x 4 gunicorn threads (DESIGN.md: >= 500 req/s at 32 connections, p95 <= 50 ms at 8).
WRK_CONNECTIONS = 32
WRK_LIGHT_CONNECTIONS = 8


# --- Parent side: processes, databases, figures --------------------------------

def bench_env(tmp: Path, *, database_url: str, redis_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OWN_ENV}
    env.update(
        DJANGO_SETTINGS_MODULE="avatarapp.settings",
        DATABASE_URL=database_url,
        AVATAR_MEDIA_ROOT=str(tmp / "media"),
        AVATAR_BROKER_DIR=str(tmp / "broker"),
        AVATAR_BEAT_SCHEDULE=str(tmp / "celerybeat-schedule"),
        # The bench makes a few guests and uploads from 127.0.0.1; limits are not what it measures.
        AVATAR_RATE_GUESTS_PER_HOUR="100000",
        AVATAR_RATE_UPLOADS_PER_HOUR="100000",
        AVATAR_RATE_LOGINS_PER_HOUR="100000",  # the login timing below fails on purpose, many times
        AVATAR_GUEST_DAILY_QUOTA="100000",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def run_checked(command: list[str], env: dict | None = None, timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def psql(sql: str) -> None:
    run_checked(["psql", f"{PG_DSN}/postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])


def drop_pg_database() -> None:
    psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_BENCH_URL).flushdb()


def migrate(env: dict) -> None:
    run_checked([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env)


@contextmanager
def celery_worker(env: dict, log_path: Path) -> Iterator[LoggedProcess]:
    # INFO whatever LOG_LEVEL says: the " ready." line is logged at INFO.
    command = worker_command(concurrency=1, hostname=f"bench-{os.getpid()}@%h", beat=False, loglevel="INFO")
    with LoggedProcess(command, log_path, env=env, cwd=ROOT) as worker:
        worker.wait_for_log(" ready.", "celery worker", timeout=120)
        yield worker


@contextmanager
def gunicorn(env: dict, log_path: Path, port: int) -> Iterator[LoggedProcess]:
    # No control socket: gunicorn's default one is a fixed path in $HOME, shared with any other gunicorn.
    command = web_command(port, workers=WEB_WORKERS) + ["--no-control-socket"]
    with LoggedProcess(command, log_path, env=env, cwd=ROOT) as web:
        web.wait_for_url(f"http://127.0.0.1:{port}/healthz", "gunicorn", timeout=60)
        yield web


def child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.service", *args]


def run_child(args: list[str], env: dict, log_path: Path, on_line: Callable[[str], None] | None = None,
              timeout: float = 600) -> dict:
    """Run a child entry of this module; it prints progress lines and one final `RESULT {json}` line."""
    result = None
    with log_path.open("w") as log:
        child = subprocess.Popen(child_command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                                 text=True, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            for line in child.stdout:
                if line.startswith("RESULT "):
                    result = json.loads(line[7:])
                elif on_line:
                    on_line(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args[0]} took longer than {timeout:.0f} s")
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                stop_group(child, timeout=5)
    if child.returncode != 0 or result is None:
        raise RuntimeError(f"{' '.join(args)} failed ({child.returncode}):\n{log_path.read_text()[-3000:]}")
    return result


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def measure_pickup(name: str, env: dict, tmp: Path, jobs: int, progress,
                   then: Callable[[], None] | None = None) -> list:
    """Pickup latency against a worker started for it; `then` runs while that worker is still up."""
    task = progress.add_task(f"pickup, {name}: starting worker", total=jobs)
    with celery_worker(env, tmp / f"worker-{name}.log"):
        progress.update(task, description=f"pickup, {name}")

        def on_line(line: str) -> None:
            if line.startswith("JOB "):
                progress.advance(task)

        result = run_child(["--pickup", str(jobs)], env, tmp / f"pickup-{name}.log", on_line)
        if then:
            then()
    latencies = result["latencies_ms"]
    p50, p95 = statistics.median(latencies), percentile(latencies, 95)
    budget = PICKUP_BUDGET_MS[name]
    label = "Redis + PostgreSQL" if name == "redis" else "embedded broker + SQLite"
    return [
        Figure(f"queue pickup p50, {label}", p50, "ms", f"<= {budget:.0f} ms", p50 <= budget),
        Figure(f"queue pickup p95, {label} ({len(latencies)} jobs)", p95, "ms", "", None),
    ]


WRK_SCRIPT = """
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%%d duration_us=%%d p50_us=%%d p95_us=%%d p99_us=%%d max_us=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
  io.write(string.format("BENCH_ERRORS connect=%%d read=%%d write=%%d status=%%d timeout=%%d\\n",
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def run_wrk(url: str, token: str, seconds: int, tmp: Path, connections: int = WRK_CONNECTIONS) -> dict:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: run `make bench-deps` (apt-get install wrk)")
    script = tmp / "job.lua"
    script.write_text(WRK_SCRIPT % {"token": token})
    out = run_checked(["wrk", "--latency", "-t", str(min(WRK_THREADS, connections)), "-c", str(connections),
                       "-d", f"{seconds}s",
                       "--timeout", "5s", "-s", str(script), url], timeout=seconds + 60)
    stats = dict(re.findall(r"(\w+)=(\d+)", "\n".join(line for line in out.splitlines() if line.startswith("BENCH"))))
    if "requests" not in stats:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    stats = {k: int(v) for k, v in stats.items()}
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    stats["errors"] = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    stats["raw"] = out
    return stats


def worker_processes(master_pid: int):
    import psutil

    return psutil.Process(master_pid).children()


def torch_mapped(process) -> bool:
    """Whether torch's shared libraries are mapped into a process (they are once torch is imported)."""
    try:
        return any("torch" in Path(m.path).parts or "libtorch" in m.path for m in process.memory_maps())
    except Exception:  # noqa: BLE001 - psutil.AccessDenied, NoSuchProcess, ...
        return False


def visited_paths(setup: dict) -> tuple[list[str], list[str]]:
    """Pages anyone may open, and API calls of the bench's guest: what a visitor makes a web process load."""
    share, output, photo = setup["share"], setup["output"], setup["photo"]
    public = ["/", "/consent", "/upload", "/gallery", "/offline", "/sw.js", "/manifest.webmanifest", "/healthz",
              "/readyz", f"/s/{share}", f"/s/{share}/card.jpg", f"/s/{share}/image", f"/packs/{setup['pack']}/preview",
              "/api/v1/packs", "/api/v1/consent", "/api/v1/openapi.json"]
    private = ["/api/v1/me", "/api/v1/jobs", f"/api/v1/jobs/{setup['job']}", "/api/v1/outputs",
               f"/api/v1/outputs/{output}/image", f"/api/v1/outputs/{output}/thumbnail", f"/api/v1/photos/{photo}",
               f"/api/v1/photos/{photo}/image"]
    return public, private


def exercise_web(base: str, setup: dict, rounds: int = 4) -> list[str]:
    """Every visited path a few times (gunicorn spreads them over its workers); the ones answering 5xx."""
    import requests

    auth = {"Authorization": f"Bearer {setup['token']}"}
    public, private = visited_paths(setup)
    failed = set()
    for _ in range(rounds):
        for path, headers in [(p, {}) for p in public] + [(p, auth) for p in private]:
            status = requests.get(base + path, headers=headers, timeout=30).status_code
            # /readyz answers 503 by design here: the memory bench runs no warm worker.
            if status >= 500 and not (path == "/readyz" and status == 503):
                failed.add(path)
    return sorted(failed)


def busy_cpu_seconds() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def cpu_seconds(processes) -> float:
    import psutil

    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def bench_postgres_backends() -> list:
    """The PostgreSQL server processes serving the bench database (their title names it)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(PG_DB in part for part in p.info["cmdline"] or ()):
            found.append(p)
    return found


def load_with_accounting(url: str, token: str, seconds: int, tmp: Path, web_pid: int, connections: int) -> dict:
    """One wrk run, and where the machine's CPU went meanwhile: gunicorn, PostgreSQL, wrk, everything else."""
    import resource

    import psutil

    web = [psutil.Process(web_pid), *psutil.Process(web_pid).children()]
    pg = bench_postgres_backends()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, web0, pg0 = busy_cpu_seconds(), cpu_seconds(web), cpu_seconds(pg)
    stats = run_wrk(url, token, seconds, tmp, connections=connections)
    busy = busy_cpu_seconds() - busy0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    # Backends opened during the run (a gunicorn thread's first query) count from their start.
    known = {p.pid for p in pg}
    opened = [p for p in bench_postgres_backends() if p.pid not in known]
    web_cpu, pg_cpu = cpu_seconds(web) - web0, cpu_seconds(pg) - pg0 + cpu_seconds(opened)
    elapsed = stats["duration_us"] / 1e6
    stats["web_ms_per_request"] = web_cpu / max(1, stats["requests"]) * 1000
    stats["pg_ms_per_request"] = pg_cpu / max(1, stats["requests"]) * 1000
    stats["other_cpu_percent"] = max(0.0, busy - web_cpu - pg_cpu - wrk) / (elapsed * psutil.cpu_count()) * 100
    return stats


def run(short: bool) -> list[Figure]:
    """All service figures; a failure is printed and reported as a failed figure, not raised."""
    from rich.console import Console

    figures: list[Figure] = []
    try:
        measure(short, figures)
    except Exception as e:  # noqa: BLE001 - the other suites' figures still get printed
        Console(stderr=True).print_exception()
        first_line = (str(e).splitlines() or [""])[0][:80]
        figures.append(Figure(f"service bench failed: {type(e).__name__}: {first_line}", 1, "", "0", False))
    return figures


def measure(short: bool, figures: list[Figure]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    jobs = 10 if short else 30
    seconds = 5 if short else 10
    # AVATAR_BENCH_SERVICE=pickup or =web runs one half (when working on it); both by default.
    parts = os.getenv("AVATAR_BENCH_SERVICE", "pickup,web").split(",")
    tmp_root = ROOT / "var" / "bench-tmp"
    tmp = tmp_root / f"run-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pg_env = bench_env(tmp / "pg", database_url=f"{PG_DSN}/{PG_DB}", redis_url=REDIS_BENCH_URL)
    sqlite_env = bench_env(tmp / "embedded", database_url=f"sqlite:///{tmp / 'embedded' / 'bench.sqlite3'}",
                           redis_url=None)
    for sub in ("pg", "embedded"):
        (tmp / sub / "media").mkdir(parents=True)

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with ExitStack() as cleanup, Progress(*columns) as progress:
        # Callbacks run last-in first-out: processes stop before their databases and folders go.
        if not os.getenv("AVATAR_BENCH_KEEP"):  # set it to keep the logs under var/bench-tmp/
            cleanup.callback(lambda: tmp_root.rmdir() if tmp_root.exists() and not any(tmp_root.iterdir()) else None)
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)

        step = progress.add_task("databases: create and migrate", total=2)
        drop_pg_database()
        flush_redis()
        cleanup.callback(flush_redis)
        psql(f"CREATE DATABASE {PG_DB}")
        cleanup.callback(drop_pg_database)
        migrate(pg_env)
        progress.advance(step)
        migrate(sqlite_env)
        progress.advance(step)

        web = setup = None
        base = ""
        if "web" in parts:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            web = cleanup.enter_context(gunicorn(pg_env, tmp / "gunicorn.log", port))

        def api_setup() -> None:
            # A guest, a photo and one finished job with one output, made through the API by the worker
            # that is up for the Redis pickup run.
            nonlocal setup
            if web is not None:
                task = progress.add_task("API: a guest and a finished job through the API", total=1)
                setup = run_child(["--api-setup", base], pg_env, tmp / "api-setup.log")
                progress.advance(task)

        # --- 1. queue pickup (and the API's data, while the Redis worker is up) ----------
        if "pickup" in parts:
            figures += measure_pickup("redis", pg_env, tmp / "pg", jobs, progress, then=api_setup)
            figures += measure_pickup("embedded", sqlite_env, tmp / "embedded", jobs, progress)
        elif web is not None:
            with celery_worker(pg_env, tmp / "pg" / "worker-api.log"):
                api_setup()
        if web is None:
            return

        # --- 2. GET /api/v1/jobs/{id} on gunicorn, PostgreSQL and Redis -------------------
        failed = exercise_web(base, setup)  # both gunicorn workers import everything and connect before the load
        url = f"{base}/api/v1/jobs/{setup['job']}"
        task = progress.add_task(f"API: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} {seconds} s", total=None)
        stats = load_with_accounting(url, setup["token"], seconds, tmp, web.pid, WRK_CONNECTIONS)
        progress.update(task, total=1, completed=1)
        # As long as the throughput run: its p95 carries a budget too.
        task = progress.add_task(f"API: wrk -c{WRK_LIGHT_CONNECTIONS} {seconds} s", total=None)
        light = run_wrk(url, setup["token"], seconds, tmp, connections=WRK_LIGHT_CONNECTIONS)
        progress.update(task, total=1, completed=1)
        light_p95_ms = light["p95_us"] / 1000
        errors = stats["errors"] + light["errors"]
        api = "GET /api/v1/jobs/{id}"
        figures += [
            Figure(f"{api} throughput ({WEB_WORKERS} gunicorn workers x 4 threads, wrk -c{WRK_CONNECTIONS})",
                   stats["rps"], "req/s", f">= {API_RPS_BUDGET:.0f} req/s at {WRK_CONNECTIONS} connections",
                   not errors and stats["rps"] >= API_RPS_BUDGET),
            Figure(f"{api} latency p95 (wrk -c{WRK_LIGHT_CONNECTIONS})", light_p95_ms, "ms",
                   f"<= {API_P95_BUDGET_MS:.0f} ms at {WRK_LIGHT_CONNECTIONS} connections",
                   not errors and light_p95_ms <= API_P95_BUDGET_MS),
            Figure(f"{api} latency p50 (wrk -c{WRK_CONNECTIONS}, queueing included)", stats["p50_us"] / 1000, "ms"),
            Figure(f"{api} latency p95 (wrk -c{WRK_CONNECTIONS}, queueing included)", stats["p95_us"] / 1000, "ms"),
            Figure(f"{api} CPU per request: gunicorn", stats["web_ms_per_request"], "ms", "", None),
            Figure(f"{api} CPU per request: PostgreSQL", stats["pg_ms_per_request"], "ms", "", None),
            Figure("other processes' CPU during the load (share of all cores)", stats["other_cpu_percent"], "%", "",
                   None),
            Figure(f"{api} throughput (wrk -c{WRK_LIGHT_CONNECTIONS})", light["rps"], "req/s", "", None),
            Figure(f"{api} errors or non-2xx under load", errors, "responses", "0", errors == 0),
        ]

        # --- 3. a wrong password for a known account against an unknown account ----------
        task = progress.add_task("API: login timing, known vs unknown account", total=None)
        known_ms, unknown_ms = login_timing(base, rounds=10 if short else 30)
        progress.update(task, total=1, completed=1)
        ratio = known_ms / unknown_ms
        figures += [
            Figure("POST /api/v1/auth/login, wrong password, known account (median)", known_ms, "ms", "", None),
            Figure("POST /api/v1/auth/login, unknown account (median)", unknown_ms, "ms", "", None),
            Figure("login time, known / unknown account (enumeration by timing)", ratio, "x",
                   "within 10 %", abs(ratio - 1) <= 0.10),
        ]

        # --- 4. web process memory ----------------------------------------------------
        task = progress.add_task("web memory", total=2)
        failed = sorted(set(failed) | set(exercise_web(base, setup)))  # after the load, everything once more
        if failed:
            progress.console.print(f"[red]answered 5xx while exercising the web process: {', '.join(failed)}")
        workers = worker_processes(web.pid)
        rss_mb = max(p.memory_info().rss for p in workers) / 2**20
        torch_in_gunicorn = any(torch_mapped(p) for p in workers)
        progress.advance(task)
        probe = run_child(["--memory-probe", json.dumps(setup)], pg_env, tmp / "memory-probe.log")
        progress.advance(task)
        torch_found = bool(probe["torch"]) or torch_in_gunicorn
        figures += [
            Figure(f"web process RSS (largest of {len(workers)} gunicorn workers, after the load)", rss_mb, "MB",
                   f"<= {WEB_RSS_BUDGET_MB:.0f} MB", rss_mb <= WEB_RSS_BUDGET_MB),
            Figure("web process RSS (wsgi app in one process, pages + API + 5 uploads with face detection)",
                   probe["rss_mb"], "MB",
                   f"<= {WEB_RSS_BUDGET_MB:.0f} MB", probe["rss_mb"] <= WEB_RSS_BUDGET_MB),
            Figure("torch modules in web process", int(torch_found), "", "0", not torch_found),
        ]


# --- Child side: run inside the bench environment (its own DATABASE_URL, broker) ------------

def login_timing(base: str, rounds: int) -> tuple[float, float]:
    """Median wall time of a failed login for a registered address and for an unknown one, interleaved
    (known, unknown, unknown, known, ...) so drift in the machine's speed falls on both alike."""
    import requests

    email, password = f"timing-{os.getpid()}@example.in", "a long and unusual passphrase 7"
    response = requests.post(f"{base}/api/v1/auth/register", json={"email": email, "password": password}, timeout=30)
    response.raise_for_status()
    times: dict[bool, list[float]] = {True: [], False: []}
    for n in range(rounds * 2):
        known = n % 4 in (0, 3)
        body = {"email": email if known else f"nobody-{n}@example.in", "password": "not the password at all"}
        started = time.perf_counter()
        answer = requests.post(f"{base}/api/v1/auth/login", json=body, timeout=30)
        times[known].append((time.perf_counter() - started) * 1000)
        if answer.status_code != 401:
            raise SystemExit(f"login timing: expected 401, got {answer.status_code}: {answer.text[:200]}")
    return statistics.median(times[True]), statistics.median(times[False])


def say(line: str) -> None:
    print(line, flush=True)


def setup_child() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")
    import django

    django.setup()


def bench_user_photo_pack():
    """A consenting guest, their photo and the first pack, through the same actions the API calls."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from avatarapp.accounts.consent import consent_version
    from avatarapp.accounts.models import User
    from avatarapp.actions.accounts import do_give_consent
    from avatarapp.actions.photos import do_upload_photo
    from avatarapp.packs.models import StylePack
    from avatarapp.packs.registry import sync_packs

    registered, problems = sync_packs()
    if not registered:
        raise SystemExit(f"no style packs registered (run `make prepare`): {problems}")
    user = User.objects.create_guest()
    do_give_consent(user, consent_version(), adult=True)
    photo = do_upload_photo(user, SimpleUploadedFile(PORTRAIT.name, PORTRAIT.read_bytes()))
    pack = StylePack.objects.filter(enabled=True).order_by("position").first()
    return user, photo, pack


def child_pickup(jobs: int) -> None:
    """Enqueue jobs one at a time; for each, started_at minus the moment it was sent."""
    from django.utils import timezone

    from avatarapp.actions.jobs import enqueue
    from avatarapp.jobs.models import Job

    user, photo, pack = bench_user_photo_pack()

    def one(seed: int, timeout: float = 120) -> Job:
        job = Job.objects.create(user=user, photo=photo, pack=pack, count=1, seed=seed)
        sent = timezone.now()
        enqueue(job)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job.refresh_from_db(fields=["status", "started_at", "finished_at", "error_code"])
            if job.is_finished:
                if job.started_at is None:
                    raise SystemExit(f"job {job.id} finished without starting: {job.status} {job.error_code}")
                job.sent_at = sent
                return job
            time.sleep(0.05)
        raise SystemExit(f"job {job.id} not finished after {timeout} s (status {job.status})")

    one(0, timeout=300)  # warm-up: the first job loads the model in the worker's pool process
    time.sleep(0.3)
    latencies = []
    for i in range(jobs):
        job = one(i + 1)
        latencies.append((job.started_at - job.sent_at).total_seconds() * 1000)
        say(f"JOB {i + 1} {latencies[-1]:.1f} ms {job.status}")
        time.sleep(0.3)  # a quiet system: the worker is back waiting on the broker
    say("RESULT " + json.dumps({"latencies_ms": latencies}))


def child_api_setup(base: str) -> None:
    """A guest, a photo, one real finished job with one output and a share, made through the API."""
    import requests

    from avatarapp.packs.registry import sync_packs

    sync_packs()
    s = requests.Session()
    r = s.post(f"{base}/api/v1/auth/guest")
    r.raise_for_status()
    token = r.json()["token"]
    s.headers["Authorization"] = f"Bearer {token}"
    version = s.get(f"{base}/api/v1/consent").json()["version"]
    s.post(f"{base}/api/v1/me/consent", json={"version": version, "adult": True}).raise_for_status()
    photo = s.post(f"{base}/api/v1/photos", files={"image": ("portrait.jpg", PORTRAIT.read_bytes())})
    photo.raise_for_status()
    packs = s.get(f"{base}/api/v1/packs").json()["packs"]
    r = s.post(f"{base}/api/v1/jobs", json={"photo": photo.json()["id"], "pack": packs[0]["slug"], "count": 1,
                                             "seed": 7})
    r.raise_for_status()
    job_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while True:
        job = s.get(f"{base}/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not finish: {job}")
        time.sleep(0.2)
    if job["status"] != "succeeded" or len(job["outputs"]) != 1:
        raise SystemExit(f"job {job_id} did not succeed with one output: {job}")
    output = job["outputs"][0]["id"]
    share = s.post(f"{base}/api/v1/outputs/{output}/shares", json={})
    share.raise_for_status()
    say("RESULT " + json.dumps({"token": token, "job": job_id, "output": output, "photo": photo.json()["id"],
                                "share": share.json()["token"], "pack": packs[0]["slug"]}))


def child_memory_probe(setup: dict) -> None:
    """The WSGI application in a fresh process, the visited pages and API calls, then its RSS and torch."""
    import psutil
    from django.test import Client

    from avatarapp.wsgi import application  # noqa: F401  (what gunicorn loads)

    client = Client(raise_request_exception=False)
    auth = {"Authorization": f"Bearer {setup['token']}"}
    public, private = visited_paths(setup)
    for path in public:
        client.get(path)
    for path in private:
        client.get(path, headers=auth)
    for _ in range(200):
        client.get(f"/api/v1/jobs/{setup['job']}", headers=auth)
    # Uploads: decoding, normalising and the face detector (built once, then kept) are in the figure.
    from django.core.files.uploadedfile import SimpleUploadedFile
    for _ in range(5):
        response = client.post("/api/v1/photos", {"image": SimpleUploadedFile("selfie.jpg", PORTRAIT.read_bytes())},
                               headers=auth)
        assert response.status_code == 201, response.content
    rss_mb = psutil.Process().memory_info().rss / 2**20
    torch = any(name == "torch" or name.startswith("torch.") for name in sys.modules)
    say("RESULT " + json.dumps({"rss_mb": rss_mb, "torch": torch}))


def main(argv: list[str]) -> int:
    setup_child()
    if argv[:1] == ["--pickup"]:
        child_pickup(int(argv[1]))
    elif argv[:1] == ["--api-setup"]:
        child_api_setup(argv[1])
    elif argv[:1] == ["--memory-probe"]:
        child_memory_probe(json.loads(argv[1]))
    else:
        print("usage: python -m bench.service --pickup N | --api-setup BASE | --memory-probe SETUP_JSON",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
