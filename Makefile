# Chhavi: `make run` serves the app with a worker; `make test` runs the whole suite.
# Both start from nothing: they create .venv, install, migrate and build the demo model.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch==2.13.0 is the CPU wheel on these machines' disk; see constraints.txt.
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: install prepare run worker web test test-fast bench bench-short bench-deps browser-deps messages lint clean model

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e ".[worker,test]"
	touch $(STAMP)

install: $(STAMP)

prepare: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) -m worker.demo_model build
	$(PY) manage.py register_packs
	$(PY) manage.py collectstatic --noinput -v0
	@if command -v msgfmt >/dev/null; then $(PY) manage.py compilemessages -v0 -i ".venv" -i "var" -i "node_modules"; fi

run: prepare
	$(PY) manage.py serve

# Download a catalogue model into AVATAR_MODELS_DIR (var/models/<NAME>): `make model NAME=sd15`.
model: install
	$(PY) manage.py fetch_model $(NAME)

# The pieces of `make run` on their own, for a GPU box that only runs workers.
worker: prepare
	$(PY) -m celery -A worker.app worker --queues gpu,train --concurrency 1 --loglevel INFO

web: prepare
	$(PY) -m gunicorn avatarapp.wsgi:application --bind 127.0.0.1:$${PORT:-8000} --workers 2 --threads 4

# Debian's chromium and Noto fonts for the browser tests (no browser download).
browser-deps:
	@test -x /usr/bin/chromium && fc-list 2>/dev/null | grep -q NotoSansDevanagari || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-core >/dev/null)

test: prepare browser-deps
	$(PY) -m pytest

# The benchmarks (bench/, `python -m bench --help`): the `bench` extras, Debian's wrk as the
# load generator, chromium for the page measurements. Each run writes var/bench.json.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP_INSTALL) -e ".[worker,bench]"
	touch $(BENCH_STAMP)

bench-deps: $(BENCH_STAMP) browser-deps
	@command -v wrk >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)

bench: prepare bench-deps
	$(PY) -m bench

bench-short: prepare bench-deps
	$(PY) -m bench --short

# The import contracts (pyproject's [tool.importlinter]: avatarapp never imports worker, doors ->
# actions -> models -> lib), ruff, and mypy with Django's stubs.
LINT_STAMP := $(VENV)/.lint-installed

$(LINT_STAMP): $(STAMP)
	$(PIP_INSTALL) -e ".[worker,test,lint]"
	touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check avatarapp worker bench tests
	$(VENV)/bin/mypy

# Re-extract the strings of every language after changing templates or code.
messages: install
	for lang in hi bn mr te ta gu kn ml pa or ur as brx doi ks kok mai mni ne sa sat sd; do $(PY) manage.py makemessages -l $$lang -d django --no-obsolete -i ".venv/*" -i "var/*" -i "tests/*" -i "node_modules/*" >/dev/null; done
	$(PY) tools/prune_notice_catalogues.py
	$(PY) manage.py compilemessages -v0 -i ".venv" -i "var" -i "node_modules"

clean:
	rm -rf var/test var/static
