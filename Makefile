# Two commands for users: `make run` (talk to the agent) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# livekit-client for the room's page, pinned by room/package-lock.json
NODE_MODULES := room/node_modules/.package-lock.json

.PHONY: run room test check format bench bench-silence bench-load bench-turns bench-failover bench-sizing cluster system-deps browser-deps livekit-server

run: $(INSTALLED) system-deps .env
	$(PY) agent.py console --text

# talk to it from a browser: the local LiveKit server, the worker and a web page, on loopback
room: $(INSTALLED) system-deps livekit-server $(NODE_MODULES) .env
	$(PY) -m room

# the same past one LiveKit server: a Redis, two nodes sharing it, a worker on each, a page per node
cluster: $(INSTALLED) system-deps livekit-server $(NODE_MODULES) .env
	$(PY) -m room.cluster

# the suite starts its own PostgreSQL, Redis and LiveKit servers on free loopback ports
test: $(INSTALLED) system-deps browser-deps livekit-server $(NODE_MODULES)
	$(PY) -m pytest

check: $(INSTALLED) system-deps browser-deps livekit-server $(NODE_MODULES)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

format: $(INSTALLED)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(INSTALLED)
	$(PY) -m bench

# one worker with 1..16 people talking at once, beside a plain livekit-starter agent
bench-load: $(INSTALLED) system-deps livekit-server
	$(PY) -m bench.load

# when the agent answers a person who has finished, and that it waits for them to finish:
# this project beside livekit's defaults and a VAD-only agent, people at once (N = 1, 8)
bench-turns: $(INSTALLED) system-deps livekit-server
	$(PY) -m bench.turns

# what one conversation costs each part of a fleet, on two LiveKit nodes with a worker each,
# and the fleet for 1,000 and 100,000 conversations (uses bench-load's bench/load.json)
bench-sizing: $(INSTALLED) system-deps livekit-server
	$(PY) -m bench.sizing

# PostgreSQL primary → replica and Redis master → replica (Sentinel), killed for real
bench-failover: $(INSTALLED) system-deps
	$(PY) -m bench.failover

# a real room under faults: how often the agent is heard within 2 s, the longest silence
bench-silence: $(INSTALLED) system-deps livekit-server
	$(PY) -m bench.silence

$(INSTALLED): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(NODE_MODULES): room/package.json room/package-lock.json
	cd room && npm ci --no-audit --no-fund --loglevel=error
	touch $@

.env:
	cp .env.example .env
	@echo "Created .env from .env.example: set OPENAI_API_KEY (or OPENAI_BASE_URL) in it."

# PortAudio for the console (sounddevice), espeak-ng for spoken test audio, and the servers
# the tests start themselves: PostgreSQL and Redis.
system-deps:
	@missing=""; \
	ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || missing="$$missing libportaudio2"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing system packages:$$missing. Install them with: sudo apt-get install$$missing"; \
	  fi; \
	fi

# Debian's Chromium for the browser test (Playwright drives it; no browser is downloaded)
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Missing chromium for the browser test. Install it with: sudo apt-get install chromium"; \
	  fi; \
	fi

# Built once per machine from its Go module into ~/.cache (about 5 minutes); the room tests
# skip without it on a developer's machine, and fail under CI.
livekit-server: $(INSTALLED)
	@$(PY) -m room.livekit_server build || echo "The room tests will not run without it."
