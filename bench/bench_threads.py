"""Training steps/s at 1 vs 2 torch threads, side by side in one run: the base stage's model and its real
description rows, our train_sft, arms alternated (1, 2, 1, 2, ...), median per arm.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_threads.py [--repeats 2] [--steps 25]

Only meaningful on an otherwise idle machine: the pipeline runs one stage at a time, so a training stage
could use both cores, but anything else running makes 2 threads much slower than 1 (STACK-NOTES.md).
Writes bench.threads.* into metrics/bench.json (other keys kept).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, "bench")
from common import rate, record, step_timer  # noqa: E402

WARMUP = 6  # steps whose time is not counted (first-step allocations, lazy imports)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/base")
    ap.add_argument("--records", default="data/prepared/train.jsonl")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25)
    args = ap.parse_args()

    import torch
    from vlmcot.models import load_model_and_processor
    from vlmcot.pipeline.base import description_rows, load_records
    from vlmcot.training.sft import TrainConfig, train_sft

    batch = 32  # the base stage's batch
    rows, _ = description_rows(load_records(args.records), ".")
    rows = rows[: batch * args.steps]

    rates: dict[int, list[float]] = {1: [], 2: []}
    load_at_start = round(os.getloadavg()[0], 2)
    for r in range(args.repeats):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model, proc = load_model_and_processor(args.model)
            timer = step_timer()
            cfg = TrainConfig(learning_rate=1e-4, max_steps=args.steps, per_device_train_batch_size=batch,
                              logging_steps=1000, save_steps=100000, max_length=384)
            with tempfile.TemporaryDirectory() as tmp:
                train_sft(model, proc, rows, cfg, f"{tmp}/out", f"{tmp}/ck", run_hash=f"{threads}-{r}",
                          report_to=[], callbacks=[timer])
            steps_s = rate(timer.times, WARMUP)
            rates[threads].append(steps_s)
            print(f"{threads} thread(s): {steps_s:.3f} steps/s", flush=True)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    figures = {"steps_per_s_1": round(one, 3), "steps_per_s_2": round(two, 3), "ratio_2_vs_1": round(two / one, 3),
               "load_at_start": load_at_start, "repeats": args.repeats, "batch": batch}
    print(f"2 threads / 1 thread: {two / one:.2f}x ({two:.3f} vs {one:.3f} steps/s)")
    record("bench.threads", figures)


if __name__ == "__main__":
    main()
