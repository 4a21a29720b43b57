"""Candidate sampling throughput: our batched HFBackend (num_return_sequences, left padding) vs a
plain one-call-per-sample `generate` loop, on the same model, questions and token budget.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_sampling.py [--model models/sft/both] [--questions 16] [--n 8]

Both sides generate exactly `--tokens` new tokens per sequence (min_new_tokens = max_new_tokens), so
the ratio measures batching, not how early a model happens to stop. Target: >= 10x.
Writes bench.sampling.* into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, "bench")
from common import record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="models/sft/both")
    ap.add_argument("--records", default="data/prepared/train.jsonl")
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--n", type=int, default=8, help="samples per question")
    ap.add_argument("--tokens", type=int, default=48, help="new tokens per sample")
    args = ap.parse_args()

    import torch

    from vlmcot.generation import GenerationConfig, GenRequest, HFBackend
    from vlmcot.io import read_jsonl
    from vlmcot.models import load_model_and_processor
    from vlmcot.prompts import build_prompt
    from vlmcot.records import VQARecord

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model, processor = load_model_and_processor(args.model)
    recs = [VQARecord.model_validate(r) for r in read_jsonl(args.records)][: args.questions]
    reqs = [GenRequest(r.id, r.image, build_prompt(r, "cot")) for r in recs]
    total = args.questions * args.n

    # ours: one generate call per batch of questions, n sequences each
    model.generation_config.min_new_tokens = args.tokens
    backend = HFBackend(model, processor, progress=False)
    cfg = GenerationConfig(do_sample=True, temperature=1.0, num_return_sequences=args.n,
                           max_new_tokens=args.tokens, batch_size=args.questions)
    t0 = time.perf_counter()
    backend.generate(reqs, cfg)
    ours = total / (time.perf_counter() - t0)

    # plain: what a user would write first - one generate call per sample
    one = GenerationConfig(do_sample=True, temperature=1.0, num_return_sequences=1, max_new_tokens=args.tokens,
                           batch_size=1)
    t0 = time.perf_counter()
    for req in reqs:
        for _ in range(args.n):
            backend.generate([req], one)
    plain = total / (time.perf_counter() - t0)

    ratio = ours / plain
    print(f"{total} sequences x {args.tokens} tokens: batched {ours:.1f} seq/s, one-at-a-time {plain:.1f} seq/s, "
          f"ratio {ratio:.1f}x (target >= 10x)")
    record("bench.sampling", {"batched_seq_per_s": round(ours, 2), "one_at_a_time_seq_per_s": round(plain, 2),
                              "ratio": round(ratio, 2), "sequences": total, "tokens": args.tokens,
                              "threads": int(os.environ["OMP_NUM_THREADS"])})


if __name__ == "__main__":
    main()
