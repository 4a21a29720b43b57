"""SFT steps/s in float32 vs bfloat16 autocast on the CPU, side by side in one run: the base model, the
CoT mix's real rows, the sft stage's batch (8), our train_sft, arms alternated (fp32, bf16, ...), median
per arm. Also prints each arm's mean training loss over the same steps (same rows, same order).

    .venv/bin/python bench/bench_precision.py [--repeats 2] [--steps 60]

bf16 on a CPU is torch.autocast(cpu, bfloat16) around the forward with float32 weights and optimizer
(vlmcot.training.common.trainer_kwargs). It pays only on CPUs with native bf16 (avx512_bf16, AMX); the
figures say which CPU flags were present. Idle machine only. Writes bench.precision.* into
metrics/bench.json (other keys kept).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, "bench")
from common import rate, record, step_timer  # noqa: E402

WARMUP = 6  # steps whose time is not counted (first-step allocations, lazy imports)


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/base")
    ap.add_argument("--mix", default="data/mix/cot.jsonl")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from vlmcot.models import load_model_and_processor
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import TrainConfig, train_sft

    torch.set_num_threads(args.threads)
    batch = 8  # the sft stage's batch
    with open(args.mix) as f:
        rows, _ = sft_rows([json.loads(line) for line in f][: batch * args.steps], ".")

    rates: dict[bool, list[float]] = {False: [], True: []}
    losses: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.repeats):
        for bf16 in (False, True):
            model, proc = load_model_and_processor(args.model)
            timer = step_timer()
            cfg = TrainConfig(learning_rate=5e-4, max_steps=args.steps, per_device_train_batch_size=batch,
                              logging_steps=1000, save_steps=100000, max_length=384, bf16=bf16)
            with tempfile.TemporaryDirectory() as tmp:
                stats = train_sft(model, proc, rows, cfg, f"{tmp}/out", f"{tmp}/ck", run_hash=f"{bf16}-{r}",
                                  report_to=[], callbacks=[timer])
            steps_s = rate(timer.times, WARMUP)
            rates[bf16].append(steps_s)
            losses[bf16].append(stats["train_loss"])
            print(f"{'bf16' if bf16 else 'fp32'}: {steps_s:.3f} steps/s, train loss {stats['train_loss']:.4f}", flush=True)
    fp32, bf16 = statistics.median(rates[False]), statistics.median(rates[True])
    figures = {"steps_per_s_fp32": round(fp32, 3), "steps_per_s_bf16": round(bf16, 3),
               "ratio_bf16_vs_fp32": round(bf16 / fp32, 3), "train_loss_fp32": round(losses[False][0], 4),
               "train_loss_bf16": round(losses[True][0], 4), "cpu_bf16_flags": " ".join(cpu_flags()) or "none",
               "threads": args.threads, "steps": args.steps, "batch": batch, "repeats": args.repeats,
               "load_at_start": round(os.getloadavg()[0], 2)}
    print(f"bf16 / fp32: {bf16 / fp32:.2f}x ({bf16:.3f} vs {fp32:.3f} steps/s); CPU flags: {figures['cpu_bf16_flags']}")
    record("bench.precision", figures)


if __name__ == "__main__":
    main()
