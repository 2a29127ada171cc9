# atomstat: build the environment, test, and serve the dashboard.
#   make app    build .venv (if needed) and serve the Voila dashboard
#   make test   build .venv, ensure chromium, lint, run the whole pytest suite
# Only a system python3 (3.11) is needed; everything else comes from requirements.lock.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

# Dashboard server: atomstat.serve_app, Voila with atomstat's guards (README, "Serving and
# security"). Every GET of the page starts a kernel: a closed or reloaded tab's kernel is shut
# down at once (its beacon), one no page has been connected to for ORPHAN_TIMEOUT s too, and
# idle kernels are culled even with their tab open (cull_connected).
# HOST=0.0.0.0 shares the link: a token is then required (ATOMSTAT_TOKEN=..., or one is made and
# printed), and the Host header must be an IP address, localhost, this machine's name or one
# of ALLOW_HOSTS (space-separated, e.g. ALLOW_HOSTS=lab.example.org).
HOST ?= 127.0.0.1
PORT ?= 8866
CULL_IDLE_TIMEOUT ?= 1800
CULL_INTERVAL ?= 60
ORPHAN_TIMEOUT ?= 30
ALLOW_HOSTS ?=
# Folder the dashboard's file browser may open and where exports and sessions go.
DATA_DIR ?= $(HOME)/atomstat-data
VOILA_FLAGS := --no-browser --Voila.ip=$(HOST) --port=$(PORT) \
	--MappingKernelManager.cull_idle_timeout=$(CULL_IDLE_TIMEOUT) \
	--MappingKernelManager.cull_interval=$(CULL_INTERVAL) \
	--MappingKernelManager.cull_connected=True \
	--AtomstatVoila.orphan_timeout=$(ORPHAN_TIMEOUT) \
	$(foreach h,$(ALLOW_HOSTS),--AtomstatVoila.allowed_hosts=$(h))

.PHONY: venv chromium lint test app lock bench clean

venv: $(STAMP)

# --compile-bytecode: uv (unlike pip) writes no .pyc files, and where PYTHONDONTWRITEBYTECODE is
# set (as in many containers) every process then compiles every module it imports again: a cold
# `atomstat analyze` of one 512^2 file took 4.5 s that way and 2.8 s with them.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	[ "$$($(BIN)/uv --version 2>/dev/null | cut -d' ' -f2)" = "$(UV_VERSION)" ] \
		|| $(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q atomstat app
	touch $@

chromium:
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM)"; else \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv chromium lint
	$(BIN)/pytest -q

app: venv
	@echo "atomstat dashboard: http://$(HOST):$(PORT)/  data: $(DATA_DIR)  (Ctrl-C to stop)"
	ATOMSTAT_DATA_DIR=$(DATA_DIR) $(BIN)/python -m atomstat.serve_app app/dashboard.ipynb $(VOILA_FLAGS)

lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra test --extra bench --python-version 3.11 \
		-o requirements.lock

bench: venv
	for f in bench/bench_*.py; do [ -e "$$f" ] || continue; $(BIN)/python "$$f" || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find . \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
