"""Learning curve of the embedded SFT: the real `sft` code on the real mix, at several example counts.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_learning.py [--examples 4000 8000 16000]
        [--mix data/mix/both.jsonl] [--base models/base] [--holdout 100] [--batch 8] [--lr 1.5e-3]
        [--tag both] [--curve]

For each example count E it trains a fresh copy of the base model with vlmcot.training.sft.train_sft
(the TrainConfig of params.yaml's ``sft.train``, with max_steps = E / batch) on the mix minus the
held-out questions, then answers the held-out questions greedily under the direct and the CoT prompt
(vlmcot.evaluation.evaluate, the evaluate stage's code) and prints accuracy per dataset and per op,
extraction failures, examples seen and seconds.

The held-out questions are the last ``--holdout`` *train* questions of every dataset (by id): their
rows are removed from the mix before training, so they are unseen, and the eval split is never
touched. Design choices (world size, ops, model size, steps) are read off this curve, never off eval.

``--curve``: one run of the largest E with a checkpoint evaluated at every smaller E instead of one
fresh run per E (cheaper; the learning-rate schedule is then the largest run's).
Writes bench.learning.<tag>.* into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, "bench")
from common import record  # noqa: E402


def heldout_ids(records, n: int) -> set[str]:
    by: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        by[r.dataset].append(r.id)
    return {i for ids in by.values() for i in sorted(ids)[-n:]} if n else set()


def question_id(row_id: str) -> str:
    # mix row ids are "<record id>-cot" / "-direct" / "-general" / "-format..."
    return row_id.rsplit("-", 1)[0]


def evaluate_model(model, processor, records, ev: dict, max_new_tokens: int = 128) -> dict:
    """Accuracies of ``model`` on ``records`` under params.yaml's evaluate section ``ev`` (its modes,
    prompt style and scoring), greedy, at most ``max_new_tokens``."""
    from vlmcot.evaluation import evaluate
    from vlmcot.generation import GenerationConfig, HFBackend

    backend = HFBackend(model, processor, root=".", progress=False)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=100)
    modes = ev["modes"]
    rows = evaluate(backend, records, gen, modes=modes, style=ev["style"], scoring=ev["scoring"])
    ops = {r.id: (r.meta or {}).get("op") for r in records}
    out: dict[str, float] = {}
    by = collections.defaultdict(list)
    for row in rows:
        by[(row["mode"], row["dataset"])].append(row)
        by[(row["mode"], row["dataset"], ops[row["id"]])].append(row)
        by[(row["mode"],)].append(row)
    for key, rs in by.items():
        name = ".".join(str(k) for k in key)
        out[f"{name}.acc"] = round(100 * statistics.fmean(r["score"] for r in rs), 1)
        out[f"{name}.n"] = len(rs)
        out[f"{name}.extract_fail"] = round(100 * statistics.fmean(0.0 if r["extract_ok"] else 1.0 for r in rs), 1)
    for mode in modes:  # the Table 2 average: mean over datasets
        accs = [v for k, v in out.items() if k.startswith(f"{mode}.") and k.count(".") == 2 and k.endswith(".acc")]
        out[f"{mode}.avg"] = round(statistics.fmean(accs), 1) if accs else 0.0
    return out


def print_result(tag: str, examples: int, seconds: float, res: dict) -> None:
    print(f"\n== {tag}: {examples} examples, {seconds:.0f} s: CoT avg {res.get('cot.avg')}  direct avg "
          f"{res.get('direct.avg')}  extract_fail cot {res.get('cot.extract_fail')} direct {res.get('direct.extract_fail')}")
    keys = sorted({k.rsplit(".", 1)[0].split(".", 1)[1] for k in res if k.count(".") >= 2 and k.endswith(".acc")})
    for k in keys:
        d, c = res.get(f"direct.{k}.acc"), res.get(f"cot.{k}.acc")
        n = res.get(f"cot.{k}.n") or res.get(f"direct.{k}.n")
        print(f"   {k:32s} n={n:4d}  direct {d!s:>5}  cot {c!s:>5}  cot-fail {res.get(f'cot.{k}.extract_fail')}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, nargs="+", default=[4000, 8000, 16000])
    ap.add_argument("--mix", default="data/mix/both.jsonl")
    ap.add_argument("--records", default="data/prepared/train.jsonl")
    ap.add_argument("--base", default="models/base")
    ap.add_argument("--holdout", type=int, default=100, help="last N train questions per dataset held out")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--set", nargs="*", default=[], help="extra sft.train overrides key=value (yaml values)")
    ap.add_argument("--tag", default="both")
    ap.add_argument("--curve", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recall-steps", type=int, default=0,
                    help="first train the base's language model on key-value recall written in token ids "
                         "(bench_recall.pretrain_recall_ids: 60 arbitrary BPE tokens as keys, the digits as values)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    import torch
    import yaml

    torch.set_num_threads(args.threads)
    from vlmcot.io import read_jsonl
    from vlmcot.models.loading import load_model_and_processor
    from vlmcot.records import validate_vqa
    from vlmcot.training.data import sft_rows
    from vlmcot.training.sft import TrainConfig, train_sft

    params = yaml.safe_load(Path("params.yaml").read_text())
    train_kw = dict(params["sft"]["train"])
    if args.batch:
        train_kw["per_device_train_batch_size"] = args.batch
    if args.lr:
        train_kw["learning_rate"] = args.lr
    for kv in args.set:
        k, v = kv.split("=", 1)
        train_kw[k] = yaml.safe_load(v)
    records, _ = validate_vqa(read_jsonl(args.records))
    held = heldout_ids(records, args.holdout)
    held_records = [r for r in records if r.id in held]
    mix = [row for row in read_jsonl(args.mix) if question_id(row["id"]) not in held]
    rows, errors = sft_rows(mix, ".")
    assert not errors, errors[:3]
    print(f"{len(rows)} training rows, {len(held_records)} held-out train questions")
    batch = train_kw["per_device_train_batch_size"]
    figures: dict[str, float] = {}
    counts = sorted(args.examples)
    runs = [counts[-1]] if args.curve else counts
    for total in runs:
        model, processor = load_model_and_processor(args.base)
        if args.recall_steps:
            from bench_recall import pretrain_recall_ids

            tok = processor.tokenizer
            one = lambda w: tok(w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
            digits = [one(str(d)) for d in range(1, 10)]
            keys = [i for i in range(100, 400) if i not in digits][:60]  # 60 arbitrary BPE tokens as keys
            t_r = time.perf_counter()
            acc = pretrain_recall_ids(model, keys, digits, one(","), one("?"), args.recall_steps)
            figures[f"{args.tag}.recall_acc"] = acc
            figures[f"{args.tag}.recall_s"] = round(time.perf_counter() - t_r, 1)
            print(f"recall pretraining: {args.recall_steps} steps, {len(keys)} keys, held-out recall {acc:.1f}%, "
                  f"{figures[f'{args.tag}.recall_s']:.0f} s")
        cfg = TrainConfig(**{**train_kw, "max_steps": max(1, total // batch), "save_steps": 10**9})
        evals = {}
        callbacks = []
        if args.curve:
            from transformers import TrainerCallback

            marks = {max(1, e // batch): e for e in counts[:-1]}

            class EvalAt(TrainerCallback):
                def on_step_end(self, a, state, control, model=None, **kw):
                    if state.global_step in marks:
                        t = time.perf_counter() - t0
                        model.eval()
                        res = evaluate_model(model, processor, held_records, params["evaluate"])
                        model.train()
                        evals[marks[state.global_step]] = (t, res)

            callbacks = [EvalAt()]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            stats = train_sft(model, processor, rows, cfg, Path(tmp) / "out", Path(tmp) / "ckpt", run_hash="bench",
                              report_to=[], run_name="bench", callbacks=callbacks)
            seconds = time.perf_counter() - t0
        print(f"train loss {stats.get('train_loss'):.3f}, {stats.get('global_step')} steps, {seconds:.0f} s")
        evals[total] = (seconds, evaluate_model(model, processor, held_records, params["evaluate"]))
        for e, (s, res) in sorted(evals.items()):
            print_result(args.tag, e, s, res)
            pre = f"{args.tag}.e{e}"
            figures[f"{pre}.seconds"] = round(s, 1)
            figures[f"{pre}.cot_avg"] = res["cot.avg"]
            figures[f"{pre}.direct_avg"] = res["direct.avg"]
            figures.update({f"{pre}.{k}": v for k, v in res.items() if k.endswith(".acc") or k.endswith("extract_fail")})
        figures[f"{args.tag}.e{total}.train_loss"] = round(stats.get("train_loss", 0.0), 4)
    if not args.no_record:
        record(f"bench.learning.{args.tag}", {k.split(".", 1)[1]: v for k, v in figures.items()})
    print(json.dumps({k: v for k, v in figures.items() if k.endswith("_avg") or k.endswith("seconds")}, indent=1))


if __name__ == "__main__":
    main()
