# Chhavi: `make run` serves the app with a worker; `make test` runs the whole suite.
# Both start from nothing: they create .venv, install, migrate and build the demo model.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch==2.13.0 is the CPU wheel on these machines' disk; see constraints.txt.
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: install prepare run worker web test test-fast bench bench-short browser-deps messages lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e ".[worker,test]"
	touch $(STAMP)

install: $(STAMP)

prepare: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py prepare_demo
	$(PY) manage.py collectstatic --noinput -v0
	@if command -v msgfmt >/dev/null; then $(PY) manage.py compilemessages -v0 -i ".venv" -i "var" -i "node_modules"; fi

run: prepare
	$(PY) manage.py serve

# The pieces of `make run` on their own, for a GPU box that only runs workers.
worker: prepare
	$(PY) -m celery -A worker.app worker --queues gpu --concurrency 1 --loglevel INFO

web: prepare
	$(PY) -m gunicorn avatarapp.wsgi:application --bind 127.0.0.1:$${PORT:-8000} --workers 2 --threads 4

# Debian's chromium and Noto fonts for the browser tests (no browser download).
browser-deps:
	@test -x /usr/bin/chromium && fc-list 2>/dev/null | grep -q NotoSansDevanagari || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-core >/dev/null)

test: prepare browser-deps
	$(PY) -m pytest

bench: prepare
	$(PY) -m worker.bench

bench-short: prepare
	$(PY) -m worker.bench --short

# Re-extract the strings of every language after changing templates or code.
messages: install
	for lang in hi bn mr te ta gu kn ml pa or ur; do $(PY) manage.py makemessages -l $$lang -d django --no-obsolete -i ".venv/*" -i "var/*" -i "tests/*" -i "node_modules/*" >/dev/null; done
	$(PY) manage.py compilemessages -v0 -i ".venv" -i "var" -i "node_modules"

clean:
	rm -rf var/test var/static
