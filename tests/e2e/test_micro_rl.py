"""Micro end-to-end of the second half of the pipeline: sft -> sample@train -> pairs -> dpo -> dpo_round@r2 -> controls ->
evaluate -> sample@eval -> rerank -> credit -> report, through the real stage entry (vlmcot.stage.main,
MLflow included), on a handful of stand-in records with tiny model sizes.

Asserts artifacts and metric keys exist and values are in range; it does not assert accuracy."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from vlmcot.io import read_json, read_jsonl


def _micro_sft_helpers():
    # the world/mix stand-ins of the SFT micro test, loaded by path (test dirs are not packages)
    spec = importlib.util.spec_from_file_location("micro_sft", Path(__file__).parent / "test_micro_sft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def micro_params(root: Path) -> Path:
    model = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2,
                 text_hidden=64, text_layers=1, text_heads=2, text_intermediate=128, max_position=256,
                 vocab_size=300)
    gen = dict(max_new_tokens=32, batch_size=16)
    params = {
        "base": {"model": model, "train": dict(learning_rate=3e-3, max_steps=4, per_device_train_batch_size=8,
                                               logging_steps=2, save_steps=1000, max_length=256),
                 "eval_images": 2, "generation": gen,
                 # not world images: no reading phase (its default is the embedded 1,000 steps)
                 "vision_pretrain": {"steps": 0}},
        # enough steps to learn the '### Answer:' format, so samples are sometimes right and sometimes wrong
        "sft": {"mixes": ["both"], "train": dict(learning_rate=5e-3, max_steps=250, per_device_train_batch_size=8,
                                                 logging_steps=20, save_steps=1000, max_length=256,
                                                 warmup_ratio=0.05)},
        "sample": {"items": {"train": {"records": "data/prepared/train.jsonl"},
                             "eval": {"records": "data/prepared/eval.jsonl"}},
                   "num_samples": 8, "max_new_tokens": 32, "temperature_short": 0.7, "temperature_mc": 0.7, "batch_size": 8, "chunk_size": 16},
        "pairs": {"candidates": "data/sample/train/candidates.jsonl", "low": 0.1, "high": 0.9},
        "dpo": {"train": dict(learning_rate=1e-3, max_steps=4, per_device_train_batch_size=4, logging_steps=2,
                              save_steps=1000, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])},
        # iterative DPO: round 2 samples from the round-1 (dpo) model and DPO-trains from it
        "dpo_round": {"rounds": {"r2": {"start_model": "models/dpo", "seed": 1}},
                      "train_overrides": {"max_steps": 3}},
        "control": {"train": dict(learning_rate=1e-3, max_steps=-1, per_device_train_batch_size=4, logging_steps=2,
                                  save_steps=1000, max_length=256)},
        "evaluate": {"models": {"both": "models/sft/both", "dpo": "models/dpo", "cont_sft": "models/control/cont_sft",
                                "rft": "models/control/rft"}, "generation": gen},
        # the DPO model alone: this run trains no GRPO model (the embedded default reranks with both)
        "rerank": {"n_subsets": 4, "verifiers": {"dpo": {"policy": "models/dpo", "reference": "models/sft/both"}}},
        "credit": {"num_pairs": 2},
        "report": {"table2_models": ["both"]},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_micro_sample_pairs_dpo_evaluate_rerank_credit_report(tmp_path, monkeypatch):
    from vlmcot.stage import main

    helpers = _micro_sft_helpers()
    monkeypatch.chdir(tmp_path)
    helpers.make_world(tmp_path)
    helpers.make_mixes(tmp_path)
    params = str(micro_params(tmp_path))

    assert main("base", params) == 0
    assert main("sft", params, item="both") == 0

    assert main("sample", params, item="train") == 0
    st = read_json("metrics/sample_train.json")
    assert st["all.candidates"] == 48 * 8 and 0 <= st["all.sample_accuracy"] <= 1
    assert 0 <= st["all.extract_fail_rate"] <= 1 and st["all.samples_per_s"] > 0

    assert main("pairs", params) == 0
    pairs = read_jsonl("data/pairs/pairs.jsonl")
    assert pairs, f"no pairs: {read_json('metrics/pairs.json')}"

    assert main("dpo", params) == 0
    d = read_json("metrics/dpo.json")
    assert d["global_step"] == 4 and d["pairs"] == len(pairs)
    assert json.loads(Path("models/dpo/vlmcot_config.json").read_text())["train"]["beta"] == 0.1

    # round 2 of iterative DPO: the same questions sampled again from the round-1 model, new pairs, DPO
    # from that model (its reference); only the language model moves (vision tower and projector frozen)
    assert main("dpo_round", params, item="r2") == 0
    c1, c2 = read_jsonl("data/sample/train/candidates.jsonl"), read_jsonl("data/dpo_rounds/r2/candidates.jsonl")
    assert [(c["id"], c["sample"]) for c in c2] == [(c["id"], c["sample"]) for c in c1]
    assert [c["text"] for c in c2] != [c["text"] for c in c1]  # new draws (new model, round seed)
    r2_pairs = read_jsonl("data/dpo_rounds/r2/pairs.jsonl")
    r2 = read_json("metrics/dpo_rounds/r2/dpo.json")
    assert r2["global_step"] == 3 and r2["pairs"] == len(r2_pairs) > 0
    assert read_json("metrics/dpo_rounds/r2/pairs.json")["all.pairs"] == len(r2_pairs)
    assert read_json("metrics/dpo_rounds/r2/sample_r2.json")["all.candidates"] == len(c2)
    saved = json.loads(Path("models/dpo_rounds/r2/vlmcot_config.json").read_text())
    assert saved["sft_model"] == "models/dpo" and saved["train"]["max_steps"] == 3
    from safetensors.torch import load_file
    import torch

    w1, w2 = load_file("models/dpo/model.safetensors"), load_file("models/dpo_rounds/r2/model.safetensors")
    moved = [k for k in w1 if not torch.equal(w1[k], w2[k])]
    assert moved and all(k.startswith("language_model.") for k in moved), moved[:5]
    curve = Path("metrics/plots/train/dpo_round_r2.csv").read_text().splitlines()
    assert curve[0].startswith("step,loss,rewards_accuracies") and len(curve) >= 2

    for item in ("cont_sft", "rft"):
        assert main("control", params, item=item) == 0
        c = read_json(f"metrics/control/{item}.json")
        assert c["global_step"] == 4 and c["matched_steps"] == 4  # the same number of steps as DPO
        assert Path(f"models/control/{item}/model.safetensors").is_file()

    for model in ("both", "dpo", "cont_sft", "rft"):
        assert main("evaluate", params, item=model) == 0
        m = read_json(f"metrics/eval/{model}.json")
        assert 0 <= m[f"{model}.cot.avg"] <= 1 and 0 <= m[f"{model}.direct.avg"] <= 1

    assert main("sample", params, item="eval") == 0
    assert main("rerank", params) == 0
    r = read_json("metrics/rerank.json")
    for ds in ("synth_chart", "synth_sci"):
        for method in ("majority", "best_of_n", "weighted", "oracle"):
            for n in (1, 2, 4, 8):
                assert 0 <= r[f"{ds}.{method}.n{n}"] <= 1
        assert r[f"{ds}.oracle.n8"] >= r[f"{ds}.majority.n8"]  # pass@N bounds any vote
        head = Path(f"metrics/plots/rerank/rerank_{ds}.csv").read_text().splitlines()
        assert head[0] == "n,best_of_n,majority,oracle,weighted" and len(head) == 1 + 4
    rewards = read_jsonl("data/rerank/rewards.jsonl")
    assert len(rewards) == 12 * 8 and all(x["tokens"] >= 1 for x in rewards)

    assert main("credit", params) == 0
    assert Path("data/credit/credit.png").stat().st_size > 1000
    assert "<span" in Path("data/credit/credit.html").read_text()
    toks = read_jsonl("data/credit/tokens.jsonl")
    assert len(toks) == 4 and {t["side"] for t in toks} == {"chosen", "rejected"}
    assert all(abs(sum(t["normalized"])) < 1e-3 * max(1, len(t["normalized"])) for t in toks)  # mean 0

    assert main("report", params) == 0
    md = Path("reports/report.md").read_text()
    assert "Table 6" in md and "6 SFT + DPO" in md and "control: RFT" in md
    assert "figures/rerank_synth_chart.png" in md and "figures/credit.png" in md
    assert Path("reports/figures/rerank_synth_sci.png").is_file()
    assert "sample@train" in md and "mlflow ui" in md
