"""The table stage: Tables 2 and 6 merged from the evaluate stage's per-model metrics."""

import pytest

from vlmcot.io import read_json, write_json
from vlmcot.pipeline import table


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
