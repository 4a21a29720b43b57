# Two commands on a fresh clone (README): `make repro` runs the embedded pipeline, `make test` the tests.
# Both create .venv and install the project first (idempotent: reinstalls only when pyproject changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tiny models on 2 cores: torch's default threading made steps ~30x slower (STACK-NOTES.md).
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test test-fast clean-outputs vllm-env

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: the local CPU wheel; a looser spec would pull GBs of CUDA wheels
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(VENV)/.installed

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# vLLM in its own environment (it pins its own torch and transformers, which clash with ours): the
# sample/evaluate stages reach it over HTTP with `backend: server` (docs/gpu.md). GPU machines only.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed: requirements-vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-vllm.txt
	touch $@

vllm-env: $(VLLM_VENV)/.installed
