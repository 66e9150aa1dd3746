"""Entry point of a GPU worker: ``celery -A worker.app worker -Q gpu``.

It sets Django up (the job row lives in its database; a setting with a bad value
stops the worker right here, naming the variable), registers the tasks, and makes
sure a worker that takes generation jobs is warm before it says it is ready:

1. At start, in the main process, it checks that AVATAR_BASE_MODEL names a model at
   all; if not, it exits with status 2 and the reason before any pool process starts.
2. Each pool process loads the engine, the packs of its model family and runs a
   warm-up, then records itself as warm (worker.readiness, which /readyz reads).
3. The main process waits for every pool process to be warm before it consumes a
   message (the WaitForWarmEngine bootstep runs before the Consumer), so celery's
   "<name> ready." line and the worker_ready signal only come once the first job will
   not pay for the warm-up. A pool process that cannot load the model logs why and
   stops the whole worker with status 3: the pool would otherwise start it again
   forever, and the worker would take jobs only to fail each one.

A worker that only serves the maintenance queue (the reaper) loads no model.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import django
from celery import bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.exceptions import WorkerShutdown, WorkerTerminate
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutdown
from celery.worker import WorkController, state

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarapp.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import DatabaseError, connections  # noqa: E402

import worker.tasks  # noqa: E402,F401  (registers the tasks)
from avatarapp.celery import (  # noqa: E402
    GENERATION_QUEUE,
    RENDER_PREVIEWS_TASK,
    TRAIN_QUEUE,
    app,
    generation_queue,
    train_queue,
)
from avatarapp.ops.models import WorkerStatus  # noqa: E402
from worker import readiness, safety  # noqa: E402
from worker.engine import check_base_model, detect_family, get_engine  # noqa: E402
from worker.errors import EngineError  # noqa: E402
from worker.faces import get_analyser  # noqa: E402
from worker.packs import ensure_packs_loaded  # noqa: E402

log = logging.getLogger(__name__)

EXIT_NO_MODEL = 2  # AVATAR_BASE_MODEL names nothing the engine could load
EXIT_NOT_WARM = 3  # a pool process could not load the model or warm it up
# A pool process that failed tells the main process with this signal (celery leaves it
# alone unless CELERY_RDBSIG is set for remote debugging).
NOT_WARM_SIGNAL = signal.SIGUSR2


@dataclass
class Startup:
    """What the main process learns at start; pool processes inherit it when they are forked."""

    main_pid: int = 0
    hostname: str = ""
    serves_generation: bool = False
    family: str = ""
    heartbeat: readiness.Heartbeat | None = None


startup = Startup()


# --- 1. The main process, before the pool starts -------------------------------------


@worker_init.connect
def check_model_before_start(sender: WorkController, **kwargs: object) -> None:
    worker = sender
    queues = worker.app.amqp.queues
    startup.main_pid = os.getpid()
    startup.hostname = worker.hostname
    consumed = queues.consume_from or queues
    startup.serves_generation = any(q == GENERATION_QUEUE or q.startswith(GENERATION_QUEUE + ".") for q in consumed)
    if not startup.serves_generation:
        return
    try:
        path = check_base_model(settings.AVATAR_BASE_MODEL)
        family = settings.AVATAR_BASE_FAMILY if settings.AVATAR_BASE_FAMILY != "auto" else detect_family(path)
        safety.check_configuration()  # a missing checker folder stops it here; a check that is off warns once
    except EngineError as e:
        log.critical("cannot start: %s", e)
        raise SystemExit(EXIT_NO_MODEL) from None
    # `--queues gpu` means "generation jobs": of those, this worker takes only its model family's.
    startup.family = family
    queues.select_add(generation_queue(family))
    queues.deselect([GENERATION_QUEUE])
    if TRAIN_QUEUE in consumed:
        # Training chunks likewise: only those made for this worker's model family.
        queues.select_add(train_queue(family))
        queues.deselect([TRAIN_QUEUE])
    log.info("this worker runs %s models: it takes jobs from the %s queue", family, generation_queue(family))

    def on_pool_process_not_warm(signum: int, frame: object) -> None:
        # The pool process has logged why; stop everything now (nothing runs yet, or
        # nothing can: the engine is gone), with a status that says it failed.
        worker.exitcode = EXIT_NOT_WARM
        state.should_terminate = EXIT_NOT_WARM

    signal.signal(NOT_WARM_SIGNAL, on_pool_process_not_warm)
    try:
        readiness.forget(worker.hostname)  # rows a previous run of this worker left behind
    except Exception:  # noqa: BLE001 - the pool processes meet the same database and say what is wrong
        log.warning("could not clear this worker's old status rows", exc_info=True)
    finally:
        connections.close_all()  # a pool process must not inherit an open connection


# --- 2. Each pool process -------------------------------------------------------------


def warm_and_record() -> None:
    """Load the engine and the packs, run the warm-up, then count this process as ready."""
    engine = get_engine()
    safety.load_safety_check(engine.device, engine.dtype)  # the content check, beside the engine
    try:
        ensure_packs_loaded(engine)
    except EngineError as e:
        # A broken pack is that pack's problem: its jobs fail with this reason, the others run.
        log.error("a pack could not be loaded: %s", e)
    engine.warm_up()
    get_analyser()  # the face models for likeness and skin tone, loaded before the first job needs them
    readiness.record_warm(startup.hostname, engine)
    startup.heartbeat = readiness.Heartbeat(startup.hostname, engine)
    startup.heartbeat.start()
    log.info("engine warm: %s model %s on %s", engine.family, engine.base_model, engine.device)


@worker_process_init.connect
def warm_engine(**kwargs: object) -> None:
    # With the solo or threads pool, tasks run in the main process, which warms itself
    # in WaitForWarmEngine; this signal is for forked pool processes.
    if not startup.serves_generation or os.getpid() == startup.main_pid:
        return
    try:
        warm_and_record()
    except Exception as e:  # noqa: BLE001 - whatever it is, this worker cannot generate
        # An EngineError says what is wrong in its message; anything else needs its traceback.
        log.critical("stopping the worker: the model could not be loaded or warmed up: %s", describe(e),
                     exc_info=not isinstance(e, EngineError))
        os.kill(startup.main_pid, NOT_WARM_SIGNAL)
        # Wait to be stopped: exiting now would only make the pool start another process that
        # fails the same way. If the main process somehow does not stop, go anyway.
        time.sleep(60)
        os._exit(EXIT_NOT_WARM)
    finally:
        # Tasks open their own connections; one held from start-up could pin an old
        # SQLite snapshot and hide jobs created since.
        connections.close_all()


def describe(e: Exception) -> str:
    return str(e) if isinstance(e, EngineError) else f"{type(e).__name__}: {e}"


# --- 3. The main process waits for warm pool processes, then consumes -------------------


class WaitForWarmEngine(bootsteps.StartStopStep):
    """Holds the Consumer back until every pool process is warm, or stops the worker."""

    requires = ("celery.worker.components:Pool",)

    def start(self, worker: WorkController) -> None:
        if not startup.serves_generation:
            return
        try:
            if isinstance(worker.pool, PreforkPool):
                wait_until_warm(worker)
            else:
                try:
                    warm_and_record()
                except Exception as e:  # noqa: BLE001
                    fail(worker, f"the model could not be loaded or warmed up: {describe(e)}")
            # Packs of this family with no preview rendered by such a model yet get one, between jobs.
            app.send_task(RENDER_PREVIEWS_TASK, queue=generation_queue(startup.family))
        except WorkerShutdown as e:
            # A warm shutdown (SIGTERM) while loading: nothing is running yet, so stop now
            # instead of waiting for the pool processes to finish loading a model.
            stop_beat(worker)
            raise WorkerTerminate(e.code) from None
        except WorkerTerminate:
            stop_beat(worker)
            raise
        finally:
            connections.close_all()  # pool processes started later must not inherit one


def stop_beat(worker: WorkController) -> None:
    """Stop the embedded beat process (--beat) that started moments ago, for sure.

    A beat process ignores a SIGTERM that arrives before it has reset the signal
    handlers it inherited from this process, and would then run on alone, sending the
    reaper's task forever. Stopping during start-up hits that window, so ask, then insist.
    """
    beat = getattr(worker, "beat", None)
    if beat is None or not hasattr(beat, "pid") or not beat.is_alive():
        return
    beat.terminate()
    beat.join(3)
    if beat.is_alive():
        os.kill(beat.pid, signal.SIGKILL)
        beat.join(3)


def pool_processes(pool: PreforkPool) -> list[Any]:
    # billiard keeps its processes in a private list; without it, fall back to waiting
    # for `concurrency` rows whatever their pids.
    return list(getattr(getattr(pool, "_pool", None), "_pool", None) or [])


def wait_until_warm(worker: WorkController) -> None:
    timeout = worker.app.conf.worker_proc_alive_timeout
    deadline = time.monotonic() + timeout
    processes = pool_processes(worker.pool)
    pids = {p.pid for p in processes}
    expected = len(pids) or worker.concurrency
    log.info("waiting for %d pool process(es) to load %s and warm up", expected, settings.AVATAR_BASE_MODEL)
    while True:
        # Our not-warm signal, SIGTERM or Ctrl-C set these flags; act on them here, since
        # the consumer's loop, which normally does, has not started.
        state.maybe_shutdown()
        if len(warm_pids(pids)) >= expected:
            return
        dead = [p for p in processes if p.exitcode is not None]
        if dead:
            fail(worker, f"pool process {dead[0].pid} exited ({dead[0].exitcode}) while loading the model")
        if time.monotonic() > deadline:
            fail(worker, f"the model was not loaded and warm after {timeout:.0f} s (AVATAR_WORKER_START_TIMEOUT)")
        connections.close_all()
        time.sleep(0.2)


def warm_pids(pids: set[int]) -> set[int]:
    """The pool processes (all of this worker's, if `pids` is empty) that recorded themselves warm."""
    rows = WorkerStatus.objects.filter(hostname=startup.hostname)
    if pids:
        rows = rows.filter(pid__in=pids)
    try:
        return set(rows.values_list("pid", flat=True))
    except DatabaseError:
        # Not readable (yet): the pool processes need the same database, and say what is wrong.
        return set()


def fail(worker: WorkController, reason: str) -> NoReturn:
    log.critical("cannot start: %s", reason)
    worker.exitcode = EXIT_NOT_WARM
    raise WorkerTerminate(EXIT_NOT_WARM)


app.steps["worker"].add(WaitForWarmEngine)


# --- Stopping -------------------------------------------------------------------------


@worker_process_shutdown.connect
def forget_this_process(**kwargs: object) -> None:
    if startup.heartbeat is None:
        return
    startup.heartbeat.stop()
    try:
        readiness.forget(startup.hostname, os.getpid())
    except Exception:  # noqa: BLE001 - the row goes stale instead
        log.warning("could not remove this process's status row", exc_info=True)


@worker_shutdown.connect
def forget_this_worker(**kwargs: object) -> None:
    if not startup.serves_generation:
        return
    if startup.heartbeat is not None:
        startup.heartbeat.stop()
    try:
        # Every pool process of this worker, also those killed without a word.
        readiness.forget(startup.hostname)
    except Exception:  # noqa: BLE001
        log.warning("could not remove this worker's status rows", exc_info=True)


__all__ = ["app"]
