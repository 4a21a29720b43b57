"""evaluate-stage record selection and config checks."""

import pytest

from vlmcot.config import ConfigError, parse_section
from vlmcot.io import write_jsonl
from vlmcot.pipeline import evaluate
from vlmcot.records import VQARecord


def _rec(i, ds):
    return VQARecord(id=f"{ds}_{i}", image="x.png", question="Q?", answer="1", dataset=ds, qtype="numeric",
                     split="eval", metric="relaxed_accuracy")


def test_select_records_caps_per_dataset(tmp_path):
    path = tmp_path / "eval.jsonl"
    write_jsonl(path, [_rec(i, ds) for ds in ("a", "b") for i in range(5)])
    cfg = evaluate.Config(records=str(path), max_per_dataset=2)
    assert [r.id for r in evaluate.select_records(cfg)] == ["a_0", "a_1", "b_0", "b_1"]
    cfg = evaluate.Config(records=str(path), datasets=["b"])
    assert {r.dataset for r in evaluate.select_records(cfg)} == {"b"}


def test_model_names_cannot_break_metric_keys():
    with pytest.raises(ConfigError, match="evaluate.models"):
        parse_section(evaluate.Config, {"models": {"a.b": "models/x"}}, "evaluate")
    with pytest.raises(ConfigError, match="no model named 'dpo'"):
        evaluate.dry_run(evaluate.Config(models={"both": "models/sft/both"}), "dpo")
