"""Micro end-to-end: base -> sft (two mixes) -> evaluate -> table through the real stage entry
(vlmcot.stage.main, MLflow included) on a handful of stand-in records with tiny model sizes.

Asserts artifacts and metric keys exist and values lie in [0, 1]; it does not assert accuracy."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import yaml

from vlmcot.io import read_json, read_jsonl, write_jsonl
from vlmcot.prompts import build_prompt, format_response
from vlmcot.records import VQARecord

COLORS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 170, 60)}


def make_world(root: Path, n_train: int = 24, n_eval: int = 6, size: int = 32) -> None:
    """Stand-in prepared data: two colored bars per image; a numeric and a multiple-choice dataset."""
    from PIL import Image, ImageDraw

    from vlmcot.images import ImagePolicy
    from vlmcot.io import write_text
    from vlmcot.pipeline.prepare import image_manifest

    rng = random.Random(0)
    every: list[VQARecord] = []
    (root / "data/prepared/images").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("eval", n_eval)):
        rows = []
        for i in range(n):
            names = rng.sample(sorted(COLORS), 2)
            vals = [rng.randint(1, 5) for _ in names]
            im = Image.new("RGB", (size, size), "white")
            d = ImageDraw.Draw(im)
            for j, (c, v) in enumerate(zip(names, vals)):
                d.rectangle([4 + 14 * j, size - 2 - 5 * v, 12 + 14 * j, size - 2], fill=COLORS[c])
            img = f"data/prepared/images/{split}_{i}.png"
            im.save(root / img)
            desc = f"A bar chart. The {names[0]} bar is {vals[0]}. The {names[1]} bar is {vals[1]}."
            meta = {"description": desc}
            rows.append(VQARecord(id=f"chart_{split}_{i}", image=img, question=f"What is the sum of the bars?",
                                  answer=str(sum(vals)), dataset="synth_chart", qtype="numeric", split=split,
                                  metric="relaxed_accuracy", facts={"values": vals}, meta=meta))
            taller = 0 if vals[0] >= vals[1] else 1
            rows.append(VQARecord(id=f"sci_{split}_{i}", image=img, question="Which bar is taller?",
                                  choices=names, answer="AB"[taller], dataset="synth_sci",
                                  qtype="multiple_choice", split=split, metric="mc_accuracy",
                                  facts={"values": vals}, meta=meta))
        write_jsonl(root / f"data/prepared/{split}.jsonl", rows, sort_key="id")
        every += rows
    # the manifest the later stages depend on (dvc.yaml), in prepare's own format
    write_text(root / "data/prepared/images.sha256", image_manifest(every, ImagePolicy(), root=root))


def make_mixes(root: Path) -> None:
    """Stand-in mix stage output: direct-only and both mixes in LLaVA conversation format."""
    recs = [VQARecord.model_validate(r) for r in read_jsonl(root / "data/prepared/train.jsonl")]

    def conv(r: VQARecord, mode: str) -> dict:
        vals = r.facts["values"]
        rationale = f"The bars are {vals[0]} and {vals[1]}." if mode == "cot" else None
        return {"id": f"{r.id}-{mode}", "image": r.image, "dataset": r.dataset, "kind": mode,
                "conversations": [{"from": "human", "value": "<image>\n" + build_prompt(r, mode)},
                                  {"from": "gpt", "value": format_response(rationale, r.answer)}]}

    write_jsonl(root / "data/mix/direct.jsonl", [conv(r, "direct") for r in recs], sort_key="id")
    write_jsonl(root / "data/mix/both.jsonl", [conv(r, m) for r in recs for m in ("direct", "cot")], sort_key="id")


def micro_params(root: Path) -> Path:
    model = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2,
                 text_hidden=48, text_layers=1, text_heads=2, text_intermediate=96, max_position=256,
                 vocab_size=300)
    train = dict(learning_rate=3e-3, max_steps=4, per_device_train_batch_size=8, logging_steps=2,
                 save_steps=100, max_length=256)
    gen = dict(max_new_tokens=24, batch_size=8)
    params = {
        "base": {"model": model, "train": train, "eval_images": 4, "generation": gen,
                 # the records here are not world images: no reading phase (its default is the embedded 1,000 steps)
                 "vision_pretrain": {"steps": 0}},
        "sft": {"mixes": ["direct", "both"], "train": {**train, "vision_learning_rate": 1e-3}},
        "evaluate": {"models": {"direct": "models/sft/direct", "both": "models/sft/both"}, "generation": gen},
        "table": {"models": ["direct", "both"], "table6_models": []},  # no DPO here: no Table 6
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_micro_base_sft_evaluate_table(tmp_path, monkeypatch):
    from vlmcot.stage import main

    monkeypatch.chdir(tmp_path)
    # our own experiment: other e2e tests share the session's MLflow store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"micro-sft-{tmp_path.name}")
    make_world(tmp_path)
    make_mixes(tmp_path)
    params = str(micro_params(tmp_path))

    assert main("base", params) == 0
    base = read_json("metrics/base.json")
    assert base["train_steps"] == 4
    assert all(0 <= base[k] <= 1 for k in ("desc.exact", "desc.fact_recall", "desc.value_recall", "desc.distinct"))
    assert (tmp_path / "models/base/config.json").is_file()
    assert (tmp_path / "models/base/vlmcot_config.json").is_file()
    assert len(read_jsonl("data/base/descriptions.jsonl")) == 4

    for mix in ("direct", "both"):
        assert main("sft", params, item=mix) == 0
        assert (tmp_path / f"models/sft/{mix}/model.safetensors").is_file()
        resolved = json.loads((tmp_path / f"models/sft/{mix}/vlmcot_config.json").read_text())
        assert resolved["train"]["max_steps"] == 4
        assert read_json(f"metrics/sft/{mix}.json")["global_step"] == 4
        assert not (tmp_path / f"models/checkpoints/sft/{mix}").exists()  # cleaned after success

    for model in ("direct", "both"):
        assert main("evaluate", params, item=model) == 0
        m = read_json(f"metrics/eval/{model}.json")
        for mode in ("direct", "cot"):
            for key in (f"{model}.{mode}.synth_chart.relaxed_accuracy", f"{model}.{mode}.synth_sci.mc_accuracy",
                        f"{model}.{mode}.avg", f"{model}.{mode}.extract_fail"):
                assert 0.0 <= m[key] <= 1.0, key
        preds = read_jsonl(f"data/eval/{model}.jsonl")
        assert len(preds) == 2 * 12 and {p["mode"] for p in preds} == {"direct", "cot"}

    assert main("table", params) == 0
    merged = read_json("metrics/eval.json")
    assert "both.cot.avg" in merged and "direct.direct.avg" in merged
    md = (tmp_path / "metrics/table2.md").read_text()
    assert "| 4 both (SFT) | CoT |" in md and "synth_chart" in md and "avg" in md

    # a mix that is not listed fails cleanly, naming the params key
    assert main("sft", params, item="cot") != 0

    # the Trainer logged its curves into the stage's own MLflow run (no extra run per training)
    import mlflow

    runs = mlflow.search_runs(experiment_names=[os.environ["MLFLOW_EXPERIMENT_NAME"]], output_format="list")
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted(["base", "sft@direct", "sft@both", "sft@cot", "evaluate@direct", "evaluate@both", "table"])
    sft_both = next(r for r in runs if r.info.run_name == "sft@both")
    history = mlflow.MlflowClient().get_metric_history(sft_both.info.run_id, "loss")
    assert [h.step for h in history] == [2, 4]
    assert "sft.both.train_loss" in sft_both.data.metrics and sft_both.data.params["learning_rate"] == "0.003"
