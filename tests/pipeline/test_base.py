"""The base stage on real world images: reading pretraining of the tower, then descriptions; a record
whose image is not its facts redrawn is skipped by name; torch_threads is applied."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from vlmcot.io import read_json, read_jsonl, write_jsonl
from vlmcot.stage import main
from vlmcot.world import WorldConfig, generate


def _world(root):
    cfg = WorldConfig()
    for k in ("chart", "doc", "geo", "sci"):
        getattr(cfg, k).n_train, getattr(cfg, k).n_eval = 4, 2
    records = generate(cfg, "data/prepared", progress=False)
    for split in ("train", "eval"):
        write_jsonl(root / f"data/prepared/{split}.jsonl", [r for r in records if r.split == split], sort_key="id")


@pytest.fixture
def restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_base_pretrains_reading_then_describes(tmp_path, monkeypatch, restore_threads):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    _world(tmp_path)
    # one train image overwritten: its labels would be wrong, so it must be skipped and named
    from PIL import Image

    first = read_jsonl("data/prepared/train.jsonl")[0]
    Image.new("RGB", (64, 64), "white").save(first["image"])
    model = dict(image_size=64, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
                 text_layers=1, text_heads=2, text_intermediate=96, max_position=384, vocab_size=400)
    params = {"base": {
        "model": model, "torch_threads": 2, "eval_images": 2, "generation": {"max_new_tokens": 8, "batch_size": 2},
        "tokenizer_texts": [],  # no mix here (the embedded default also trains the tokenizer on data/mix/both.jsonl)
        "vision_pretrain": {"steps": 3, "batch_size": 4, "eval_images": 4, "logging_steps": 1},
        "train": {"max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 100, "max_length": 384,
                  "freeze_vision_tower": True},
    }}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main("base", "params.yaml") == 0
    m = read_json("metrics/base.json")
    assert m["vision.steps"] == 3 and m["vision.images"] == 15 and m["vision.skipped"] == 1
    assert m["vision.token_classes"] > 20
    for k in ("text_acc", "digit_acc", "word_acc", "background_acc", "colour_acc"):
        assert 0 <= m[f"vision.{k}"] <= 1
    assert m["train_steps"] == 2
    import torch

    assert torch.get_num_threads() == 2


def test_vision_pretrain_on_non_world_records_fails_with_the_key(tmp_path, monkeypatch, capsys):
    from vlmcot.records import VQARecord
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    (tmp_path / "data/prepared").mkdir(parents=True)
    Image.new("RGB", (64, 64), "white").save("data/prepared/a.png")
    rec = VQARecord(id="x-0", image="data/prepared/a.png", question="q?", answer="1", dataset="hub_chart",
                    qtype="numeric", split="train", metric="relaxed_accuracy", facts={}, meta={"description": "A chart."})
    write_jsonl("data/prepared/train.jsonl", [rec], sort_key="id")
    model = dict(image_size=64, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
                 text_layers=1, text_heads=2, text_intermediate=96, max_position=384, vocab_size=300)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": {
        "model": model, "eval_images": 0, "tokenizer_texts": [], "vision_pretrain": {"steps": 3},
        "train": {"max_steps": 1}}}))
    assert main("base", "params.yaml") == 1
    err = capsys.readouterr().err
    assert "no world image" in err and "x-0" in err and "base.vision_pretrain.steps" in err


def test_conversation_texts_feed_the_tokenizer_and_name_bad_rows(tmp_path):
    from vlmcot.models import train_bpe_tokenizer
    from vlmcot.pipeline.base import conversation_texts

    good = {"id": "a", "conversations": [{"from": "human", "value": "<image>\nWhich bar?"},
                                         {"from": "gpt", "value": "Therefore, the answer is oat.\n\n### Answer: oat"}]}
    path = tmp_path / "mix.jsonl"
    path.write_text("\n".join([json.dumps(good),
                               '{"id": "b", "conversations": "oops"}', "not json"]) + "\n")
    texts, errors = conversation_texts([str(path)])
    assert texts == ["Which bar?", "Therefore, the answer is oat.\n\n### Answer: oat"]
    assert len(errors) == 2 and "mix.jsonl:2: record b" in errors[0] and "mix.jsonl:3" in errors[1]
    # repeated rationale words become single tokens once they are in the tokenizer's text
    tok = train_bpe_tokenizer(texts * 50, vocab_size=300)
    assert tok.tokenize("Therefore") == ["Therefore"] and tok.tokenize(" Answer") == ["ĠAnswer"]


def test_missing_tokenizer_texts_file_fails_with_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    _world(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": {"tokenizer_texts": ["data/mix/nope.jsonl"]}}))
    assert main("base", "params.yaml") == 1
    err = capsys.readouterr().err
    assert "base.tokenizer_texts" in err and "data/mix/nope.jsonl" in err


def test_description_facts_and_scores():
    from vlmcot.pipeline.base import description_scores, facts

    ref = "A bar chart with two bars. From top to bottom: oat is 3 and nut is 9."
    assert facts(ref) == ["a bar chart with two bars", "from top to bottom", "oat is 3", "nut is 9"]
    s = description_scores("A bar chart with two bars. From top to bottom: oat is 3 and nut is 8.", ref)
    assert s == {"exact": 0.0, "fact_recall": 0.75, "value_recall": 0.5}
    assert description_scores(ref, ref)["exact"] == 1.0
    assert description_scores("Owl.", "The owl eats the frog.")["value_recall"] is None  # no numbers to read
