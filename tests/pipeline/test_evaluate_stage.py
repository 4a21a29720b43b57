"""evaluate-stage record selection and config checks; the table stage's aggregation."""

import pytest

from vlmcot.config import ConfigError, parse_section
from vlmcot.io import read_json, write_json, write_jsonl
from vlmcot.pipeline import evaluate, table
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


def test_table_merges_models_in_order(tmp_path, tracker):
    d = tmp_path / "eval"
    write_json(d / "format.json", {"format.direct.synth_chart.relaxed_accuracy": 0.5, "format.direct.avg": 0.5,
                                   "format.cot.synth_chart.relaxed_accuracy": 0.25, "format.cot.avg": 0.25})
    write_json(d / "both.json", {"both.cot.synth_chart.relaxed_accuracy": 0.75, "both.cot.avg": 0.75,
                                 "both.cot.extract_fail": 0.1})
    cfg = table.Config(metrics_dir=str(d), models=["format", "both"], out_json=str(tmp_path / "eval.json"),
                       out_md=str(tmp_path / "table2.md"), table6_models=[])
    table.run(cfg, tracker)
    assert read_json(tmp_path / "eval.json")["both.cot.extract_fail"] == 0.1
    lines = (tmp_path / "table2.md").read_text().splitlines()
    assert "| 1 format only | direct | 50.0 | 50.0 |" in lines
    assert lines.index("| 1 format only | CoT | 25.0 | 25.0 |") < lines.index("| 4 both (SFT) | CoT | 75.0 | 75.0 |")
    assert "table2.md" in tracker.artifacts


def test_table_names_a_missing_evaluation(tmp_path, tracker):
    from vlmcot.stage import StageError

    with pytest.raises(StageError, match="evaluate@format"):
        table.run(table.Config(metrics_dir=str(tmp_path)), tracker)


def test_description_facts_and_scores():
    from vlmcot.pipeline.base import description_scores, facts

    ref = "A bar chart with two bars. From top to bottom: oat is 3 and nut is 9."
    assert facts(ref) == ["a bar chart with two bars", "from top to bottom", "oat is 3", "nut is 9"]
    s = description_scores("A bar chart with two bars. From top to bottom: oat is 3 and nut is 8.", ref)
    assert s == {"exact": 0.0, "fact_recall": 0.75, "value_recall": 0.5}
    assert description_scores(ref, ref)["exact"] == 1.0
    assert description_scores("Owl.", "The owl eats the frog.")["value_recall"] is None  # no numbers to read
