# Two entry points for a fresh machine: `make demo` and `make test` (both set up .venv first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONVERT_STAMP := $(VENV)/.installed-convert-stamp
PYTEST_ARGS ?=

.PHONY: setup setup-convert demo test lint bench crosscheck clean

$(STAMP): requirements.txt pyproject.toml scripts/ensure-system-deps.sh
	bash scripts/ensure-system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(STAMP)

# The converter's optional extra (jax, flax, orbax-checkpoint: `vla-stack convert octo` reads the official
# orbax checkpoint with it); the tests convert a synthetic release for real, so `make test` installs it.
$(CONVERT_STAMP): $(STAMP) requirements-convert.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-convert.txt
	touch $@

setup-convert: $(CONVERT_STAMP)

demo: setup
	MUJOCO_GL=egl $(VENV)/bin/vla-stack demo --episodes 3 --seed 0 --json out/demo.json

test: setup setup-convert
	$(VENV)/bin/ruff check src tests launch crosscheck
	MUJOCO_GL=egl $(PY) -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

bench: setup
	MUJOCO_GL=egl $(VENV)/bin/vla-stack bench overhead

# Optional: our Octo and OpenVLA against the upstream code (../shared/oracles) on the same weights;
# builds reference virtual environments under .venv-crosscheck/ and rewrites docs/crosscheck.md.
crosscheck: setup
	bash crosscheck/run.sh

clean:
	rm -rf $(VENV) .venv-crosscheck out build install log
