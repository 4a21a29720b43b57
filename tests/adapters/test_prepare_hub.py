"""The `prepare` stage in paper mode (source: hub) over local copies in the hubs' schemas."""

from datasets import Features, Image, Sequence, Value

from vlmcot.io import read_json, read_jsonl
from vlmcot.pipeline import prepare

S = Value("string")


def test_prepare_hub_mode_writes_train_and_eval_records(hub, tmp_path, tracker):
    chart_feats = Features({"image": Image(), "query": S, "label": Sequence(S)})
    train_rows = [{"image": hub.img(hub.png()), "query": f"What is bar {i}?", "label": [str(i)]} for i in range(4)]
    train_repo = hub.repo("M4Chart", {"default": {"train": train_rows}}, chart_feats)
    eval_feats = Features({"type": S, "question": S, "answer": S, "image": Image()})
    eval_rows = [{"type": "human_test", "question": "Peak?", "answer": "42", "image": hub.img(hub.jpeg())},
                 {"type": "human_test", "question": "Broken", "answer": "", "image": hub.img(hub.png())}]
    eval_repo = hub.repo("LmmsChart", {"default": {"test": eval_rows}}, eval_feats)
    out = tmp_path / "prepared"
    cfg = prepare.Config(
        source="hub", out_dir=str(out), metrics=str(tmp_path / "prepare.json"), max_bad_fraction=0.5,
        train_sources=[{"name": "chartqa_train", "local_path": str(train_repo), "split": "train",
                        "cache_dir": str(hub.cache_dir)}],
        eval_sources=[{"name": "chartqa", "local_path": str(eval_repo), "split": "test",
                       "cache_dir": str(hub.cache_dir)}],
    )
    prepare.run(cfg, tracker)
    train, ev = read_jsonl(out / "train.jsonl"), read_jsonl(out / "eval.jsonl")
    assert len(train) == 4 and {r["split"] for r in train} == {"train"}
    assert [r["answer"] for r in ev] == ["42"] and ev[0]["split"] == "eval"
    assert ev[0]["metric"] == "relaxed_accuracy"
    m = read_json(cfg.metrics)
    assert m["source.eval.chartqa.bad"] == 1 and m["source.train.chartqa_train.records"] == 4
