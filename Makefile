# hybridnb — the two commands: `make demo` (the main job) and `make test` (the suite).
# Everything the project needs is installed here, so a fresh clone works.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the CPU wheel this machine kind carries; pyproject admits >=2.10.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: help install hub-proxy test demo bench bench-peers lint format clean images
.PHONY: labextension labextension-test notebooks docs
.PHONY: demo-hybrid

help:
	@echo "make demo   run the main job (end to end on the embedded default)"
	@echo "make demo-hybrid  the hybrid case study across three namespace hosts (root)"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks (writes build/bench/*.json)"
	@echo "make bench-peers  install peers that need their own venv (KServe) for make bench"
	@echo "make lint   ruff and mypy"
	@echo "make notebooks  generate notebooks/*.ipynb from their sources in notebooks/src"
	@echo "make docs   build the documentation into build/site (strict: warnings fail)"
	@echo "make labextension  build the JupyterLab extension (make install does)"
	@echo "make images build the notebook, worker and serve images (IMAGES_ARGS=...)"

# One status line per step, then pip's own output (what it fetches, its progress bars).
$(PY):
	@echo "== install 1/4: a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "== install 2/4: an up-to-date pip"
	$(PY) -m pip install --upgrade --progress-bar on pip

$(VENV)/.installed: $(PY) pyproject.toml
	@rm -f $(LABEXT_LINK)  # pip must not write through the extension's link (below)
	@echo "== install 3/4: torch ($(TORCH_SPEC), the CPU wheel; skipped when present)"
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --progress-bar on "$(TORCH_SPEC)"
	@echo "== install 4/4: hybridnb and its dev extra (editable)"
	$(PY) -m pip install --progress-bar on -e ".[dev]"
	@# The server extension's enabling file, as the wheel's shared-data installs it.
	install -D -m 644 hybridnb/jupyter/config/hybridnb.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/hybridnb.json
	@touch $@
	@echo "== installed: $(VENV)/bin/hybridnb"

install: $(VENV)/.installed
install: labextension

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

# The hybrid case study: onprem (sshd), cloud and edge as network-namespace hosts with
# rate-limited links (needs root, iproute2, openssh-server); build/demo-hybrid has the
# executed notebook, its report, records.json and report.json (bytes per link).
demo-hybrid: install
	$(VENV)/bin/hybridnb demo-hybrid

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
	$(VENV)/bin/ruff check hybridnb tests benchmarks notebooks docs
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format hybridnb tests benchmarks

# The notebooks are generated from their linted sources (jupytext percent format);
# tests/notebooks/test_notebooks.py fails when a .ipynb is out of date.
notebooks: install
	$(PY) notebooks/build.py

# The documentation site (MkDocs): reference pages are generated from the code at build
# time (docs/hooks.py); --strict turns every warning into a failure.
# (NO_MKDOCS_2_WARNING: the theme's banner about MkDocs 2.0; pyproject pins MkDocs 1.x.)
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

clean:
	rm -rf build dist .pytest_cache .ruff_cache .mypy_cache
	rm -rf $(LABEXT_OUT) $(LABEXT)/lib $(LABEXT)/tsconfig.tsbuildinfo  # node_modules stays: cache

# -- The JupyterLab extension (extensions/hybridnb-labextension) ----------------------------
# jlpm comes with jupyterlab (in the venv); packages come from the npm registry only.
# Built once per change: node_modules and yarn's cache stay between runs (git-ignored), the
# install reruns only when package.json or yarn.lock change, the build only when a source
# does. The assets land in hybridnb/labextension (the wheel's share/jupyter/labextensions/
# via pyproject's shared-data); the venv's JupyterLab sees them through a link, as
# `jupyter labextension develop` makes one.
LABEXT := extensions/hybridnb-labextension
LABEXT_OUT := hybridnb/labextension
LABEXT_LINK := $(VENV)/share/jupyter/labextensions/hybridnb-labextension
LABEXT_SOURCES := $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*.css $(LABEXT)/style/*.js \
	$(LABEXT)/schema/*.json $(LABEXT)/scripts/*.js) $(LABEXT)/package.json $(LABEXT)/yarn.lock \
	$(LABEXT)/tsconfig.json notebooks/00_quickstart.ipynb
JLPM = cd $(LABEXT) && PATH="$(abspath $(VENV))/bin:$$PATH" jlpm

$(LABEXT)/node_modules/.yarn-state.yml: $(LABEXT)/package.json $(LABEXT)/yarn.lock | $(VENV)/.installed
	$(JLPM) install --immutable
	touch $@

$(LABEXT_OUT)/package.json: $(LABEXT_SOURCES) $(LABEXT)/node_modules/.yarn-state.yml
	$(JLPM) build:prod
	touch $@

labextension: $(LABEXT_OUT)/package.json
	@if [ -d $(LABEXT_LINK) ] && [ ! -L $(LABEXT_LINK) ]; then rm -rf $(LABEXT_LINK); fi
	@mkdir -p $(dir $(LABEXT_LINK))
	@ln -sfn $(abspath $(LABEXT_OUT)) $(LABEXT_LINK)

# The TypeScript unit tests (jest); tests/jupyter/test_labextension.py runs them in make test.
labextension-test: $(LABEXT)/node_modules/.yarn-state.yml
	$(JLPM) test
