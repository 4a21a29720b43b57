"""Training throughput: our SFT / DPO code paths vs a plain TRL script, same model, data and settings.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_training.py [--steps 40] [--warmup 5] [--repeats 5] [--embedded]

Ours is what the stages call: vlmcot.training.sft.train_sft (TrainConfig, our trainer subclass, checkpoint
bookkeeping, save) and vlmcot.training.dpo.train_dpo (DPOTrainConfig, freezing, ref model, save). Plain is
what a user would write from TRL's docs: SFTTrainer + SFTConfig / DPOTrainer + DPOConfig, with the same
hyperparameters, model, processor, rows, batch, max_length, assistant-only loss (SFT) and frozen vision
tower + projector (DPO), then save_model. Both sides report to nothing (no MLflow) and start from copies of
the same weights. Runs alternate (ours, plain, ours, plain, ...); steps/s is timed from the end of the
warm-up steps to the last step (a TrainerCallback), and medians are reported. Target: ours/plain >= 0.95.
The same rate per second of this process's CPU time is reported beside it (cpu_ratio): on a shared machine
it is the steadier figure, since other jobs stretch wall time but not our CPU time (one thread).

Default data and model are the tests' micro fixtures (tests/e2e/test_micro_sft.py world + mix + model
sizes, tests/training/test_dpo.py pairs); --embedded uses the pipeline's own models/base + data/mix/both.jsonl
(SFT) and models/sft/both + data/pairs/pairs.jsonl (DPO) instead.
Writes bench.training.{sft,dpo}.* (--embedded: bench.training_embedded.*) into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, "bench")
from common import rate, record, step_timer  # noqa: E402

# the same hyperparameters for both sides of each comparison
SFT_HP = dict(learning_rate=3e-3, per_device_train_batch_size=8, max_length=256, lr_scheduler_type="cosine",
              warmup_ratio=0.0, logging_steps=10, save_steps=1000, seed=0)
DPO_HP = dict(learning_rate=1e-3, per_device_train_batch_size=8, max_length=256, lr_scheduler_type="cosine",
              warmup_ratio=0.0, logging_steps=10, save_steps=1000, seed=0, beta=0.1)


def _load_test_module(path: str):
    # test dirs are not packages: load the fixture module by path (as tests/e2e/test_micro_rl.py does)
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def micro_setup(root: Path):
    """(sft model, dpo model, processor, sft rows, dpo rows) from the tests' micro fixtures."""
    import yaml

    from vlmcot.io import read_jsonl
    from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer
    from vlmcot.prompts import ANSWER_MARKER, COT_MC, COT_SHORT, DIRECT_MC, DIRECT_SHORT
    from vlmcot.training.data import sft_rows
    from vlmcot.training.dpo import dpo_rows

    micro = _load_test_module("tests/e2e/test_micro_sft.py")
    dpo_t = _load_test_module("tests/training/test_dpo.py")
    micro.make_world(root)
    micro.make_mixes(root)
    sizes = yaml.safe_load(micro.micro_params(root).read_text())["base"]["model"]
    raw_sft = read_jsonl(root / "data/mix/both.jsonl")
    rows_sft, errs = sft_rows(raw_sft, root)
    pairs = dpo_t._pairs(root)
    # 8 distinct pairs; repeated (new ids) so a DPO run does not restart its epoch every step
    pairs = [{**p, "id": f"{p['id']}-{k}"} for k in range(8) for p in pairs]
    rows_dpo, errs2 = dpo_rows(pairs, root)
    assert not errs and not errs2, (errs[:1], errs2[:1])
    texts = [t["value"] for r in raw_sft for t in r["conversations"]]
    texts += [p[k] for p in pairs[:8] for k in ("prompt", "chosen", "rejected")]
    texts += ["USER:\nASSISTANT:\n", ANSWER_MARKER, DIRECT_SHORT, DIRECT_MC, COT_SHORT, COT_MC]
    tok = train_bpe_tokenizer(texts, vocab_size=sizes["vocab_size"])
    cfg = TinyLlavaConfig(**sizes)
    processor = build_processor(tok, cfg.image_size, cfg.patch_size)
    model = build_tiny_llava(cfg, tok)
    return model, model, processor, processor, rows_sft, rows_dpo


def embedded_setup():
    """The pipeline's own artifacts (after a dvc repro): base model + both mix, SFT model + pairs."""
    from vlmcot.io import read_jsonl
    from vlmcot.models import load_model_and_processor
    from vlmcot.training.data import sft_rows
    from vlmcot.training.dpo import dpo_rows

    base, proc_base = load_model_and_processor("models/base")
    sft, proc_sft = load_model_and_processor("models/sft/both")
    rows_sft, _ = sft_rows(read_jsonl("data/mix/both.jsonl"), ".")
    rows_dpo, _ = dpo_rows(read_jsonl("data/pairs/pairs.jsonl"), ".")
    return base, sft, proc_base, proc_sft, rows_sft, rows_dpo


# ---------------------------------------------------------------------------------------------
# SFT: ours (the sft stage's call) vs plain TRL
# ---------------------------------------------------------------------------------------------
def sft_ours(model, processor, rows, max_steps: int, out: Path, timer) -> None:
    from vlmcot.training.sft import TrainConfig, train_sft

    cfg = TrainConfig(max_steps=max_steps, **SFT_HP)
    train_sft(model, processor, rows, cfg, out / "model", out / "ckpt", run_hash="bench", report_to=[],
              callbacks=[timer])


def sft_plain(model, processor, rows, max_steps: int, out: Path, timer) -> None:
    from datasets import Dataset, Image, Sequence
    from trl import SFTConfig, SFTTrainer

    hp = SFT_HP
    ds = Dataset.from_list([{"images": r["images"], "messages": r["messages"]} for r in rows])
    ds = ds.cast_column("images", Sequence(Image()))
    args = SFTConfig(output_dir=str(out / "ckpt"), max_steps=max_steps, learning_rate=hp["learning_rate"],
                     per_device_train_batch_size=hp["per_device_train_batch_size"], max_length=hp["max_length"],
                     lr_scheduler_type=hp["lr_scheduler_type"], warmup_steps=hp["warmup_ratio"],
                     logging_steps=hp["logging_steps"], save_steps=hp["save_steps"], seed=hp["seed"],
                     assistant_only_loss=True, bf16=False, activation_checkpointing=False, report_to=[])
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor, callbacks=[timer])
    trainer.train()
    trainer.save_model(str(out / "model"))
    processor.save_pretrained(str(out / "model"))


# ---------------------------------------------------------------------------------------------
# DPO: ours (the dpo stage's call) vs plain TRL
# ---------------------------------------------------------------------------------------------
def dpo_ours(model, ref, processor, rows, max_steps: int, out: Path, timer) -> None:
    from vlmcot.training.dpo import DPOTrainConfig, train_dpo

    cfg = DPOTrainConfig(max_steps=max_steps, **DPO_HP)
    train_dpo(model, ref, processor, rows, cfg, out / "model", out / "ckpt", run_hash="bench", report_to=[],
              callbacks=[timer])


def dpo_plain(model, ref, processor, rows, max_steps: int, out: Path, timer) -> None:
    from datasets import Dataset, Image, Sequence
    from trl import DPOConfig, DPOTrainer

    hp = DPO_HP
    for mod in (model.model.vision_tower, model.model.multi_modal_projector):  # frozen in DPO (paper)
        for p in mod.parameters():
            p.requires_grad_(False)
    keep = ("images", "prompt", "chosen", "rejected")
    ds = Dataset.from_list([{k: r[k] for k in keep} for r in rows]).cast_column("images", Sequence(Image()))
    args = DPOConfig(output_dir=str(out / "ckpt"), max_steps=max_steps, learning_rate=hp["learning_rate"],
                     per_device_train_batch_size=hp["per_device_train_batch_size"], max_length=hp["max_length"],
                     lr_scheduler_type=hp["lr_scheduler_type"], warmup_steps=hp["warmup_ratio"],
                     logging_steps=hp["logging_steps"], save_steps=hp["save_steps"], seed=hp["seed"],
                     beta=hp["beta"], bf16=False, activation_checkpointing=False, report_to=[])
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=processor,
                         callbacks=[timer])
    trainer.train()
    trainer.save_model(str(out / "model"))
    processor.save_pretrained(str(out / "model"))


def compare(name: str, arms: dict, repeats: int, max_steps: int, warmup: int, tmp: Path) -> dict[str, float]:
    """Alternate the arms ``repeats`` times; median steps/s and wall seconds per arm."""
    rates: dict[str, list[float]] = {a: [] for a in arms}
    cpu: dict[str, list[float]] = {a: [] for a in arms}
    walls: dict[str, list[float]] = {a: [] for a in arms}
    for arm, fn in arms.items():  # untimed: one-time imports and caches are paid before the first timed run
        fn(warmup + 1, tmp / f"{name}-{arm}-once", step_timer())
    for i in range(repeats):
        for arm, fn in arms.items():
            timer = step_timer()
            t0 = time.perf_counter()
            fn(max_steps, tmp / f"{name}-{arm}-{i}", timer)
            walls[arm].append(time.perf_counter() - t0)
            assert len(timer.times) == max_steps, (name, arm, len(timer.times))
            rates[arm].append(rate(timer.times, warmup))
            cpu[arm].append(rate(timer.cpu, warmup))
            print(f"  {name} {arm:5s} run {i + 1}: {rates[arm][-1]:6.2f} steps/s ({cpu[arm][-1]:6.2f} per CPU s), "
                  f"{walls[arm][-1]:5.1f} s wall", flush=True)
    ours, plain = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    ours_cpu, plain_cpu = statistics.median(cpu["ours"]), statistics.median(cpu["plain"])
    out = {
        "ours_steps_per_s": round(ours, 3),
        "plain_steps_per_s": round(plain, 3),
        "ratio": round(ours / plain, 3),
        # the same per second of this process's CPU time: what other jobs on a shared machine cannot take
        "ours_steps_per_cpu_s": round(ours_cpu, 3),
        "plain_steps_per_cpu_s": round(plain_cpu, 3),
        "cpu_ratio": round(ours_cpu / plain_cpu, 3),
        "ours_wall_s": round(statistics.median(walls["ours"]), 2),
        "plain_wall_s": round(statistics.median(walls["plain"]), 2),
    }
    print(f"{name}: ours {ours:.2f} steps/s, plain TRL {plain:.2f} steps/s, ratio {ours / plain:.3f} "
          f"(target >= 0.95); per CPU second {ours_cpu:.2f} vs {plain_cpu:.2f}, ratio {ours_cpu / plain_cpu:.3f}; "
          f"median wall incl. setup + save: ours {out['ours_wall_s']} s, plain {out['plain_wall_s']} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per run (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each run")
    ap.add_argument("--repeats", type=int, default=5, help="runs per arm (alternating ours/plain)")
    ap.add_argument("--embedded", action="store_true", help="the pipeline's models/ and data/ instead of fixtures")
    ap.add_argument("--only", choices=["sft", "dpo"], help="run one comparison")
    args = ap.parse_args()

    import torch

    # transformers' log level is left alone: it decides TrainingArguments.disable_tqdm for the plain side
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    max_steps = args.warmup + args.steps

    with tempfile.TemporaryDirectory(prefix="bench_training_") as d:
        tmp = Path(d)
        if args.embedded:
            sft_model, dpo_model, sft_proc, dpo_proc, rows_sft, rows_dpo = embedded_setup()
        else:
            sft_model, dpo_model, sft_proc, dpo_proc, rows_sft, rows_dpo = micro_setup(tmp / "data")
        n_params = sum(p.numel() for p in sft_model.parameters())
        print(f"model {n_params / 1e6:.2f}M params; {len(rows_sft)} SFT rows, {len(rows_dpo)} DPO pairs; "
              f"{args.warmup} warm-up + {args.steps} timed steps x {args.repeats} runs per arm", flush=True)
        prefix = "bench.training_embedded" if args.embedded else "bench.training"
        setup = {"steps": args.steps, "warmup_steps": args.warmup, "repeats": args.repeats,
                 "model_params_m": round(n_params / 1e6, 3), "threads": int(os.environ["OMP_NUM_THREADS"])}

        def fresh(model, proc):  # every run starts from the same weights and an untouched processor
            return copy.deepcopy(model), copy.deepcopy(proc)

        if args.only in (None, "sft"):
            def ours(n, out, timer):
                m, p = fresh(sft_model, sft_proc)
                sft_ours(m, p, rows_sft, n, out, timer)

            def plain(n, out, timer):
                m, p = fresh(sft_model, sft_proc)
                sft_plain(m, p, rows_sft, n, out, timer)

            figs = compare("sft", {"ours": ours, "plain": plain}, args.repeats, max_steps, args.warmup, tmp)
            record(f"{prefix}.sft", {**figs, **setup, "batch": SFT_HP["per_device_train_batch_size"]})

        if args.only in (None, "dpo"):
            def ours(n, out, timer):
                m, p = fresh(dpo_model, dpo_proc)
                dpo_ours(m, copy.deepcopy(dpo_model), p, rows_dpo, n, out, timer)

            def plain(n, out, timer):
                m, p = fresh(dpo_model, dpo_proc)
                dpo_plain(m, copy.deepcopy(dpo_model), p, rows_dpo, n, out, timer)

            figs = compare("dpo", {"ours": ours, "plain": plain}, args.repeats, max_steps, args.warmup, tmp)
            record(f"{prefix}.dpo", {**figs, **setup, "batch": DPO_HP["per_device_train_batch_size"]})

if __name__ == "__main__":
    main()
