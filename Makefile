# hybridnb — the two commands: `make demo` (the main job) and `make test` (the suite).
# Everything the project needs is installed here, so a fresh clone works.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the CPU wheel this machine kind carries; pyproject admits >=2.10.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: help install test demo bench bench-peers lint format clean images

help:
	@echo "make demo   run the main job (end to end on the embedded default)"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks (writes build/bench/*.json)"
	@echo "make bench-peers  install peers that need their own venv (KServe) for make bench"
	@echo "make lint   ruff and mypy"
	@echo "make images build the notebook, worker and serve images (IMAGES_ARGS=...)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
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

# Container images FROM a local Debian base (debootstrap: for machines that cannot pull
# python:3.11-slim-bookworm; IMAGES_BASE= uses the Containerfiles' public default).
# A local CPU torch wheel is used when the machine has one.
IMAGES_BASE ?= local
IMAGES_ARGS ?= $(if $(wildcard /opt/wheels/torch-*+cpu-*.whl),--find-links /opt/wheels)
images: install
	@set -e; base="$(IMAGES_BASE)"; \
	if [ "$$base" = local ]; then base=$$($(VENV)/bin/hybridnb images base); fi; \
	$(VENV)/bin/hybridnb images build $${base:+--base $$base} $(IMAGES_ARGS); \
	$(VENV)/bin/hybridnb images list

lint: install
	$(VENV)/bin/ruff check hybridnb tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format hybridnb tests benchmarks

clean:
	rm -rf build dist .pytest_cache .ruff_cache .mypy_cache
