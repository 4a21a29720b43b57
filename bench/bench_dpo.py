"""DPO settings measured on held-out *train* questions: the real `dpo` training code from the committed SFT
model on the committed pairs, one run per setting, each scored against the SFT model on the same questions.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_dpo.py [--grid "learning_rate=1e-5" "beta=0.3 num_train_epochs=1"]
        [--sft models/sft/both] [--pairs data/pairs/pairs.jsonl] [--offset 1000] [--n 200] [--tag lr]
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_dpo.py --score models/dpo models/control/rft --tag stage

The questions are train questions ``offset`` .. ``offset + n - 1`` of every dataset (by id, as the sample
stage selects them): the sample stage takes train questions 0-399, so none of these gave a pair, and the
eval split is never touched. The SFT model did train on them (as on every train question), so absolute
accuracies run higher than on eval; what this bench reads is the paired DPO - SFT delta, which is the
claim's shape.

Each grid entry is a space-separated list of ``dpo.train`` overrides (yaml values) on params.yaml's
``dpo.train``; "" is params.yaml as committed. For each it trains with vlmcot.training.dpo.train_dpo (the
stage's code: frozen tower + projector, separate frozen reference), answers the questions greedily under
both prompts (vlmcot.evaluation.evaluate, the evaluate stage's code and scoring) and prints per-dataset
accuracy, the paired bootstrap 95% CI of DPO - SFT (vlmcot.stats.paired_diff_ci, macro over datasets),
and the trainer's reward accuracy / margin over the run and at its end.
``--score MODEL_DIR ...`` scores already trained models (the stage's models/dpo, the controls) the same
way, without training.

A grid entry's ``seed`` changes the order of the same pairs, not which pairs there are: the spread over
such seeds understates the spread over pair samples (measured: +2.3, +2.3, +2.2 CoT over three seeds on
one set of 2,304 chart/geo pairs; +0.7 for the stage's own 2,289 pairs from the same questions).
Writes bench.dpo.<tag>.* into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, "bench")
from common import record  # noqa: E402


def answer(model, processor, records, ev: dict) -> dict[str, dict[str, float]]:
    """mode -> question id -> score, greedy, under params.yaml's evaluate section ``ev``."""
    from vlmcot.evaluation import evaluate
    from vlmcot.generation import GenerationConfig, HFBackend

    backend = HFBackend(model, processor, root=".", progress=False)
    rows = evaluate(backend, records, GenerationConfig(max_new_tokens=ev["max_new_tokens"], batch_size=100),
                    modes=ev["modes"], style=ev["style"], scoring=ev["scoring"])
    out: dict[str, dict[str, float]] = {m: {} for m in ev["modes"]}
    for r in rows:
        out[r["mode"]][r["id"]] = r["score"]
    return out


def per_dataset(scores: dict[str, float], strata: dict[str, str]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for q, s in scores.items():
        by.setdefault(strata[q], []).append(s)
    return {d: round(100 * sum(v) / len(v), 1) for d, v in sorted(by.items())}


def overrides(entry: str) -> dict:
    import yaml

    out = {}
    for kv in entry.split():
        k, v = kv.split("=", 1)
        val = yaml.safe_load(v)
        if isinstance(val, str):  # YAML 1.1 reads "5e-6" (no dot) as a string
            try:
                val = float(val)
            except ValueError:
                pass
        out[k] = val
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", nargs="+", default=[""], help='dpo.train overrides per run, e.g. "learning_rate=1e-5"')
    ap.add_argument("--sft", default="models/sft/both")
    ap.add_argument("--pairs", default="data/pairs/pairs.jsonl")
    ap.add_argument("--records", default="data/prepared/train.jsonl")
    ap.add_argument("--datasets", nargs="+", help="train on the pairs of these datasets only")
    ap.add_argument("--min-accuracy", type=float, help="only pairs whose question's sample accuracy is at least this")
    ap.add_argument("--max-pairs", type=int, help="train on a random subset of this many pairs (after --datasets)")
    ap.add_argument("--offset", type=int, default=1000)
    ap.add_argument("--n", type=int, default=200, help="questions per dataset")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--score", nargs="+", default=[], metavar="MODEL_DIR",
                    help="score these trained models (e.g. the stage's models/dpo) instead of training the grid")
    ap.add_argument("--tag", default="grid")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    import torch
    import yaml

    torch.set_num_threads(args.threads)
    from vlmcot.io import read_jsonl
    from vlmcot.models.loading import load_model_and_processor
    from vlmcot.records import select_records
    from vlmcot.stats import BootstrapConfig, paired_diff_ci
    from vlmcot.training.dpo import DPOTrainConfig, dpo_rows, train_dpo

    params = yaml.safe_load(Path("params.yaml").read_text())
    ev = {**params["evaluate"], "max_new_tokens": params["evaluate"]["generation"]["max_new_tokens"]}
    records = select_records(args.records, datasets=None, offset=args.offset, max_per_dataset=args.n,
                             max_bad_rate=0.0)
    strata = {r.id: r.dataset for r in records}
    pairs = read_jsonl(args.pairs)
    paired_q = {r["id"].rsplit("-p", 1)[0] for r in pairs}  # pair ids: <question id>-p<k>
    assert not paired_q & strata.keys(), "a held-out question gave a pair"
    if args.datasets:
        pairs = [p for p in pairs if p["dataset"] in args.datasets]
    if args.min_accuracy is not None:
        pairs = [p for p in pairs if p["meta"]["accuracy"] >= args.min_accuracy]
    if args.max_pairs and args.max_pairs < len(pairs):
        pairs = random.Random(0).sample(pairs, args.max_pairs)
    rows, errors = dpo_rows(pairs, ".")
    assert not errors, errors[:3]
    by_ds = {d: sum(p["dataset"] == d for p in pairs) for d in sorted({p["dataset"] for p in pairs})}
    print(f"{len(rows)} pairs {by_ds}; {len(records)} held-out train questions ({args.offset}.. per dataset)")

    boot = BootstrapConfig()
    model, processor = load_model_and_processor(args.sft)
    model.eval()
    t0 = time.perf_counter()
    sft = answer(model, processor, records, ev)
    del model
    figures: dict[str, float] = {}
    for mode, sc in sft.items():
        accs = per_dataset(sc, strata)
        figures[f"sft.{mode}.avg"] = round(sum(accs.values()) / len(accs), 1)
        print(f"SFT {mode}: avg {figures[f'sft.{mode}.avg']} {accs}  ({time.perf_counter() - t0:.0f} s)")

    for i, entry in enumerate(args.score or args.grid):
        if args.score:  # an already trained model: nothing to train
            name, stats, seconds = entry, {"global_step": 0}, 0.0
            policy, processor = load_model_and_processor(entry)
        else:
            kw = {**params["dpo"]["train"], **overrides(entry), "save_steps": 10**9}
            cfg = DPOTrainConfig(**kw)
            name = entry.replace(" ", ",") or "committed"
            policy, processor = load_model_and_processor(args.sft)
            ref, _ = load_model_and_processor(args.sft)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                stats = train_dpo(policy, ref, processor, rows, cfg, Path(tmp) / "out", Path(tmp) / "ckpt",
                                  run_hash="bench", report_to=[], run_name="bench")
                seconds = time.perf_counter() - t0
            del ref
        policy.eval()
        got = answer(policy, processor, records, ev)
        del policy
        print(f"\n== {name}: {seconds:.0f} s, {stats.get('global_step'):.0f} steps; reward acc "
              f"{stats.get('rewards/accuracies', 0):.3f} (last {stats.get('last_rewards_accuracies', 0):.2f}), margin "
              f"{stats.get('rewards/margins', 0):.3f} (last {stats.get('last_rewards_margins', 0):.3f}), logps "
              f"chosen/rejected {stats.get('logps/chosen', 0):.1f}/{stats.get('logps/rejected', 0):.1f}")
        pre = f"{i}"
        figures[f"{pre}.seconds"] = round(seconds, 1)
        for k, v in stats.items():
            if "reward" in k or "logps" in k:
                figures[f"{pre}.{k.replace('/', '_')}"] = round(v, 4)
        for mode in ev["modes"]:
            d = paired_diff_ci(got[mode], sft[mode], boot, strata)
            accs = per_dataset(got[mode], strata)
            figures[f"{pre}.{mode}.avg"] = round(100 * d["acc_a"], 1)
            figures[f"{pre}.{mode}.delta"] = round(100 * d["delta"], 1)
            figures[f"{pre}.{mode}.ci_low"] = round(100 * d["ci_low"], 1)
            figures[f"{pre}.{mode}.ci_high"] = round(100 * d["ci_high"], 1)
            print(f"   {mode:6s} {100 * d['acc_a']:.1f} vs SFT {100 * d['acc_b']:.1f}: "
                  f"{100 * d['delta']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]  {accs}")
        figures[f"{pre}.name"] = name  # type: ignore[assignment]
        sys.stdout.flush()
    if not args.no_record:
        record(f"bench.dpo.{args.tag}", figures)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
