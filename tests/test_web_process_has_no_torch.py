"""The web process never imports torch or diffusers: it must stay small and start fast."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys, django
from django.test import Client
django.setup()
import avatarapp.urls  # every view module
client = Client()
for path in ["/", "/consent", "/api/v1/packs", "/api/v1/openapi.json", "/healthz", "/offline"]:
    assert client.get(path).status_code < 500, path
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "peft", "accelerate") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def test_serving_pages_and_the_api_never_imports_torch():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "avatarapp.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY=\n" in result.stdout + "\n", result.stdout
