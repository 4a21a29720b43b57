"""Scoring speed: 1M synthetic predictions through answer extraction and every dataset's metric.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_metrics.py [--n 1000000]

Predictions mimic the embedded + paper mix: CoT responses ending in '### Answer: X' over four metric
families (relaxed accuracy with 1 answer, ANLS with 1-3 answers, VQA accuracy with 10 annotator
answers, multiple choice with 4 options), ~30% of them wrong or noisy. Target: < 10 s for the whole set.
Writes bench.metrics.* into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

sys.path.insert(0, "bench")
from common import record  # noqa: E402

from vlmcot.answers import extract_answer  # noqa: E402
from vlmcot.metrics import get_metric  # noqa: E402

WORDS = ["red", "blue", "tea", "milk", "stop sign", "coca cola", "lynx pardinus", "deli", "bakery", "soup"]
CHOICES = ["hare", "eagle", "toad", "leaves"]


def make_cases(n: int, seed: int = 0):
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            gold = str(rng.randint(0, 200))
            pred = gold if rng.random() < 0.7 else str(rng.randint(0, 200))
            cases.append(("relaxed_accuracy", pred, [gold], None))
        elif kind == 1:
            golds = rng.sample(WORDS, rng.randint(1, 3))
            pred = golds[0] if rng.random() < 0.7 else rng.choice(WORDS) + "s"
            cases.append(("anls", pred, golds, None))
        elif kind == 2:
            golds = [rng.choice(WORDS[:3]) for _ in range(10)]
            pred = rng.choice(WORDS[:4])
            cases.append(("vqa_accuracy", pred, golds, None))
        else:
            pred = rng.choice(["B", "The answer is B.", "(C)", "eagle", "A"])
            cases.append(("mc_accuracy", pred, ["B"], CHOICES))
    texts = [f"Reading the image step by step gives {c[1]}.\n\n### Answer: {c[1]}" for c in cases]
    return cases, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    cases, texts = make_cases(args.n)
    metrics = {name: get_metric(name).score for name in {c[0] for c in cases}}

    t0 = time.perf_counter()
    preds = [extract_answer(t).answer for t in texts]
    t_extract = time.perf_counter() - t0

    t0 = time.perf_counter()
    total = 0.0
    for (name, _, golds, choices), pred in zip(cases, preds):
        total += metrics[name](pred, golds, choices)
    t_score = time.perf_counter() - t0

    # the stress case: every registered main metric on every prediction (4x the work of the above)
    every = [get_metric(n).score for n in ("relaxed_accuracy", "anls", "vqa_accuracy", "mc_accuracy")]
    t0 = time.perf_counter()
    for (_, _, golds, _), pred in zip(cases, preds):
        for f in every:
            f(pred, golds, CHOICES)
    t_every = time.perf_counter() - t0

    whole = t_extract + t_score
    figures = {"n": args.n, "extract_s": round(t_extract, 2), "score_s": round(t_score, 2),
               "total_s": round(whole, 2), "mean_score": round(total / args.n, 4), "target_s": 10.0,
               "all4_metrics_every_prediction_s": round(t_every, 2)}
    print(f"{args.n:,} predictions: extraction {t_extract:.2f} s + scoring {t_score:.2f} s = {whole:.2f} s "
          f"(target < 10 s), mean score {total / args.n:.3f}")
    print(f"stress: all 4 main metrics on every prediction: {t_every:.2f} s")
    record("bench.metrics", figures)


if __name__ == "__main__":
    main()
