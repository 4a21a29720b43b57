#!/usr/bin/env bash
# GPU smoke of the paper path on 1 GPU, tiny models built locally (no downloads of weights or data):
# bf16 SFT under accelerate + DeepSpeed ZeRO-3, bf16 DPO under ZeRO-2, then `vllm serve` of the SFT
# model (a tiny LLaVA-NeXT) in its own env, sampled by the sample stage's server backend. Prints
# steps/s and samples/s; writes them to $OUT/gpu_smoke.json when OUT is set. Fails loudly (set -e,
# non-zero exit, the vLLM server's log on a sampling failure). Installs what is missing:
#   $VENV (default .venv)            pip install -e '.[gpu]'   (torch 2.13 CUDA wheel + deepspeed)
#   $VLLM_VENV (default .venv-vllm)  make vllm-env             (requirements-vllm.txt: its own torch)
#
#   bench/gpu_smoke.sh                 # on the GPU machine (about 8 min with both installs)
#   bench/gpu_smoke.sh --cpu-dry-run   # every piece a CPU runs: same data/model/stages, in-process
#                                      # training, tests/teacher/server.py standing in for vllm serve
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
case "${1:-}" in
  --cpu-dry-run) MODE=cpu ;;
  "") ;;
  *) echo "usage: $0 [--cpu-dry-run]" >&2; exit 2 ;;
esac
VENV=${VENV:-.venv}
VLLM_VENV=${VLLM_VENV:-.venv-vllm}
WORK=${WORK:-$(mktemp -d -t vlmcot-gpu-smoke.XXXXXX)}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
start=$SECONDS
step() { echo "==== [$((SECONDS - start)) s] $*"; }

if [ "$MODE" = gpu ]; then
  nvidia-smi -L || { echo "error: nvidia-smi failed: no GPU here (use --cpu-dry-run on a CPU)" >&2; exit 1; }
  if ! "$VENV/bin/python" -c "import vlmcot, deepspeed, torch; assert torch.cuda.is_available()" 2>/dev/null; then
    step "installing the project with the gpu extra into $VENV"
    test -x "$VENV/bin/python" || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[gpu]'
  fi
  "$VENV/bin/python" -c "import torch, deepspeed; assert torch.cuda.is_available(), 'torch ' + torch.__version__ + ' in $VENV sees no GPU'; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'deepspeed', deepspeed.__version__)"
  step "vLLM env $VLLM_VENV"
  make vllm-env VLLM_VENV="$VLLM_VENV"
  "$VLLM_VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
  ARGS=(--vllm-python "$VLLM_VENV/bin/python")
else
  test -x "$VENV/bin/python" || make setup
  ARGS=(--cpu-dry-run)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
step "smoke in $WORK ($MODE)"
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" bench/gpu_smoke.py "$WORK" "${ARGS[@]}"
step "done"
