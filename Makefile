# Two commands on a fresh clone (README): `make repro` runs the embedded pipeline, `make test` the tests.
# Both create .venv and install the project first (idempotent: reinstalls only when pyproject changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tiny models on 2 cores: torch's default threading made steps ~30x slower (STACK-NOTES.md).
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
# DeepSpeed (test extra: the one-process ZeRO-3 tests) installs without compiling its CUDA ops
export DS_BUILD_OPS := 0
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro test test-fast exp clean-outputs vllm-env

# pip without -q: one "Collecting/Downloading/Installing" line per package, so a 5-minute install shows
# what it is doing (--progress-bar off: a bar in a pipe or CI log is one endless line)
PIP := $(BIN)/pip install --disable-pip-version-check --progress-bar off

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "== setup 1/3: virtual environment $(VENV)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "== setup 2/3: torch 2.13.0 (CPU wheel; pinned so no resolver pulls CUDA wheels)"
	$(PIP) torch==2.13.0
	@echo "== setup 3/3: the project and its dependencies (transformers, trl, dvc, mlflow, ...) at the"
	@echo "   exact versions of constraints.txt (the ones the committed dvc.lock was produced with)"
	$(PIP) -c constraints.txt -e '.[test]'
	touch $@
	@echo "== setup done: $(VENV)"

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
	$(VLLM_VENV)/bin/pip install --disable-pip-version-check --progress-bar off -r requirements-vllm.txt
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# `make exp SET="dpo.train.beta=0.2"` (several keys: SET="a=1 b=2"; more dvc flags: ARGS="-n name"):
# `dvc exp run -S ...` that, when the run fails, puts the workspace back as it was: params.yaml (DVC
# leaves the failed -S values in it), the uncached outputs under metrics/ and the cached ones
# (`dvc checkout`): DVC deletes a failing stage's outputs before running it.
# (no `setup` prerequisite: an experiment never reinstalls; `make repro` or `make setup` comes first)
BEFORE := .dvc/tmp/before-exp
exp:
	@test -x $(BIN)/dvc || { echo "no $(BIN)/dvc: run make setup (or make repro) first"; exit 2; }
	@test -n "$(SET)" || { echo 'usage: make exp SET="dpo.train.beta=0.2"'; exit 2; }
	@rm -rf $(BEFORE) && mkdir -p $(BEFORE) && cp params.yaml $(BEFORE)/ && cp -a metrics $(BEFORE)/metrics
	@$(BIN)/dvc exp run $(foreach s,$(SET),-S '$(s)') $(ARGS) || { \
	  cp $(BEFORE)/params.yaml params.yaml && rm -rf metrics && cp -a $(BEFORE)/metrics metrics; \
	  $(BIN)/dvc checkout -q; \
	  echo "exp run failed: params.yaml, metrics/ and the DVC outputs are back as they were before it"; exit 1; }
