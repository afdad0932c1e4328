# hybridnb — the two commands: `make demo` (the main job) and `make test` (the suite).
# Everything the project needs is installed here, so a fresh clone works.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the CPU wheel this machine kind carries; pyproject admits >=2.10.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: help install hub-proxy test demo bench bench-peers lint format clean

help:
	@echo "make demo   run the main job (end to end on the embedded default)"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks (writes build/bench/*.json)"
	@echo "make bench-peers  install peers that need their own venv (KServe) for make bench"
	@echo "make lint   ruff and mypy"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	# The server extension's enabling file, as the wheel's shared-data installs it.
	install -D -m 644 hybridnb/jupyter/config/hybridnb.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/hybridnb.json
	touch $@

install: $(VENV)/.installed

# configurable-http-proxy from npm for the team tests' real JupyterHub (tests/hub),
# pinned by its lockfile, in the project (never a global install).
HUB_PROXY := build/node/node_modules/.bin/configurable-http-proxy
$(HUB_PROXY): environments/hub/proxy/package.json environments/hub/proxy/package-lock.json
	mkdir -p build/node
	cp environments/hub/proxy/package.json environments/hub/proxy/package-lock.json build/node/
	cd build/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

hub-proxy: $(HUB_PROXY)

test: install hub-proxy
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/hybridnb doctor
	$(VENV)/bin/hybridnb sites list
	$(VENV)/bin/hybridnb demo

bench: install bench-peers
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

# Peers whose pins clash with ours get their own venv under build/peers/ (see the script).
bench-peers:
	bash benchmarks/setup_peers.sh

lint: install
	$(VENV)/bin/ruff check hybridnb tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format hybridnb tests benchmarks

clean:
	rm -rf build dist .pytest_cache .ruff_cache .mypy_cache
