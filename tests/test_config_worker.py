"""A worker that cannot run stops at once with the reason, instead of announcing itself ready.

Each case starts a real `celery -A worker.app worker` in a scratch var/ folder and waits
for it to exit on its own (the timeout only bounds a broken build).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avatarapp.ops.processes import LoggedProcess
from tests.test_config import ROOT, fresh_clone_env

WORKER = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--concurrency", "1",
          "--without-gossip", "--without-mingle", "--loglevel", "INFO"]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return fresh_clone_env(tmp_path / "var")


def run_worker(env: dict[str, str], *args: str, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([*WORKER, *args], cwd=ROOT, env={**env, **variables}, capture_output=True, text=True,
                          timeout=120)


def test_a_bad_setting_stops_the_worker_naming_the_variable_and_its_values(env):
    result = run_worker(env, AVATAR_DTYPE="float16")
    assert result.returncode != 0
    assert "AVATAR_DTYPE=float16, use one of 'auto', 'fp32', 'fp16', 'bf16'" in result.stderr


def test_a_missing_model_stops_the_worker_before_it_starts_its_pool(env):
    result = run_worker(env, "-Q", "gpu", AVATAR_BASE_MODEL="/nonexistent")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "cannot start: AVATAR_BASE_MODEL /nonexistent does not exist" in output
    assert " ready." not in output


def test_a_model_that_does_not_load_stops_the_whole_worker_with_the_reason(env, tmp_path):
    # It looks like a diffusers folder (so the cheap check at start passes) but has no weights.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionImg2ImgPipeline"}))
    # The worker `make run` starts: both queues and the reaper's beat.
    result = run_worker(env, "-Q", "gpu,maintenance", "--beat", AVATAR_BASE_MODEL=str(broken))
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]
    assert f"the model could not be loaded or warmed up: could not load base model {broken}" in output
    assert " ready." not in output


def test_a_maintenance_only_worker_needs_no_model(env, tmp_path):
    """The reaper's worker loads no model: a missing one does not stop it."""
    with LoggedProcess([*WORKER, "-Q", "maintenance"], tmp_path / "worker.log", cwd=ROOT,
                       env={**env, "AVATAR_BASE_MODEL": "/nonexistent"}) as process:
        process.wait_for_log(" ready.", "the maintenance worker", timeout=60)
        assert "cannot start" not in process.output()
