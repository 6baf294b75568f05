# Two commands matter: `make demo` (the main job on the embedded default) and
# `make test` (the suite CI runs). Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed
SLIME_SRC ?= .slime

.PHONY: install test lint typecheck unit demo test-slime bench clean bwrap

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

unit: $(STAMP) bwrap
	$(PY) -m pytest -q

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

test: lint typecheck unit

demo: $(STAMP)
	$(VENV)/bin/slime-openclaw demo

# Tests marked `slime` against a checkout of upstream slime (never committed).
test-slime: $(STAMP)
	test -d $(SLIME_SRC)/slime || { echo "no slime checkout at $(SLIME_SRC); set SLIME_SRC=path" >&2; exit 2; }
	# what slime's CPU-importable modules and its loss entry point need (never slime itself)
	$(PIP) install --quiet httpx pylatexenc megatron-core
	PYTHONPATH=$(abspath $(SLIME_SRC)) $(PY) -m pytest -q -m slime

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
