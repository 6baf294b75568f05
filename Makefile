# Two commands matter: `make demo` (the main job on the embedded default) and
# `make test` (the suite CI runs). Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed
SLIME_ENV := .slime

.PHONY: install test lint typecheck unit demo test-slime bench bench-peer clean bwrap chromium openclaw openclaw-optional test-clients

# The real OpenClaw CLI (needs Node >= 24.16; Node 20's npm silently installs the empty
# placeholder 0.0.1) and Node itself, from the npm registry into a git-ignored cache folder.
# Run it with .cache/openclaw/bin/openclaw (a wrapper that puts that Node first on PATH).
OPENCLAW_VERSION ?= 2026.9.6
OPENCLAW_NODE_VERSION ?= 24.22.3
OPENCLAW_DIR := .cache/openclaw
OPENCLAW_NODE_PKG := node-linux-$(subst x86_64,x64,$(subst aarch64,arm64,$(shell uname -m)))
OPENCLAW_STAMP := $(OPENCLAW_DIR)/.installed-$(OPENCLAW_NODE_VERSION)-$(OPENCLAW_VERSION)
NPM_INSTALL := npm install --no-save --no-audit --no-fund --no-package-lock --loglevel=error

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check slime_openclaw tests benchmarks examples

typecheck: $(STAMP)
	$(PY) -m mypy slime_openclaw

# Every collected test runs (-rs lists any skip); those marked `slime` need an upstream
# slime checkout that no registry provides, so they are left to `make test-slime`.
unit: $(STAMP) bwrap chromium openclaw-optional
	$(PY) -m pytest -q -rs -m "not slime"

# bubblewrap isolates the terminal and toolcall environments (Debian package; needs root
# to install). Without it they run in their plain-subprocess mode and the bwrap tests skip.
bwrap:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; } || true; \
	  fi; \
	  command -v bwrap >/dev/null 2>&1 || echo "note: bubblewrap unavailable; environments run in plain mode" >&2; \
	fi

# Debian's chromium for the gui environment (driven headless by Playwright; never a
# downloaded browser). Needs root to install; the gui tests run in CI, they do not skip there.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 || true; \
	  fi; \
	  [ -x /usr/bin/chromium ] || echo "note: chromium unavailable; the gui tests skip (outside CI)" >&2; \
	fi

test: lint typecheck unit

demo: $(STAMP)
	$(VENV)/bin/slime-openclaw demo

# Tests marked `slime` against upstream slime's own code, built into .slime/ (git-ignored,
# cached; never committed): slime 624b824a, Megatron-LM at the commit slime's Dockerfile pins
# with slime's Megatron patches, sglang at slime's pin. SLIME_SRC / MEGATRON_SRC name git
# repositories holding those commits (default: the mirrors under /work/.mirror).
test-slime: $(STAMP)
	PY=$(PY) tools/slime_env.sh
	PYTHONPATH=$(CURDIR):$(SLIME_ENV)/site:$(SLIME_ENV)/slime:$(SLIME_ENV)/Megatron-LM $(PY) -m pytest -q -p no:cacheprovider -m slime

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# LiteLLM's proxy, the peer of `benchmarks/gateway_overhead.py --peer litellm`, in a virtual
# environment of its own: litellm[proxy] pins older litellm, huggingface-hub and rich than the
# project's environment holds, so it never enters .venv (nor `make test`).
LITELLM_VERSION ?= 1.108.7
PEER_VENV := .cache/litellm-proxy
bench-peer: $(PEER_VENV)/.installed-$(LITELLM_VERSION)

$(PEER_VENV)/.installed-$(LITELLM_VERSION):
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

$(OPENCLAW_STAMP):
	@command -v npm >/dev/null || { echo "make openclaw: npm not found (needs npm and the npm registry)" >&2; exit 2; }
	rm -rf $(OPENCLAW_DIR) && mkdir -p $(OPENCLAW_DIR)/node $(OPENCLAW_DIR)/cli $(OPENCLAW_DIR)/bin
	$(NPM_INSTALL) --prefix $(OPENCLAW_DIR)/node $(OPENCLAW_NODE_PKG)@$(OPENCLAW_NODE_VERSION)
	PATH="$(abspath $(OPENCLAW_DIR))/node/node_modules/$(OPENCLAW_NODE_PKG)/bin:$$PATH" \
	  $(NPM_INSTALL) --ignore-scripts --prefix $(OPENCLAW_DIR)/cli openclaw@$(OPENCLAW_VERSION)
	printf '#!/bin/sh\n# OpenClaw %s on Node %s (written by make openclaw)\nhere=$$(cd "$$(dirname "$$0")/.." && pwd)\nPATH="$$here/node/node_modules/%s/bin:$$PATH" exec "$$here/cli/node_modules/.bin/openclaw" "$$@"\n' \
	  $(OPENCLAW_VERSION) $(OPENCLAW_NODE_VERSION) $(OPENCLAW_NODE_PKG) > $(OPENCLAW_DIR)/bin/openclaw
	chmod +x $(OPENCLAW_DIR)/bin/openclaw
	$(OPENCLAW_DIR)/bin/openclaw --version | grep -q '$(OPENCLAW_VERSION)' || { echo "make openclaw: the installed CLI is not $(OPENCLAW_VERSION)" >&2; exit 1; }
	touch $@

openclaw: $(OPENCLAW_STAMP)

# Only the tests with the real stock clients (also part of `make test`).
test-clients: $(STAMP) openclaw
	$(PY) -m pytest -q -m clients

# What `make test` uses: the OpenClaw tests skip (saying why) when this could not install it.
openclaw-optional:
	@$(MAKE) --no-print-directory openclaw || echo "warning: OpenClaw could not be installed; tests/test_openclaw_*.py will skip" >&2

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
