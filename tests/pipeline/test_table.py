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


def _eval_metrics(d, model, acc):
    """One model's evaluate-stage metrics: CoT accuracy and its 95% interval (acc +- 0.05) on one dataset."""
    write_json(d / f"{model}.json", {f"{model}.cot.synth_chart.relaxed_accuracy": acc,
                                     f"{model}.cot.synth_chart.ci_low": acc - 0.05,
                                     f"{model}.cot.synth_chart.ci_high": acc + 0.05,
                                     f"{model}.cot.avg": acc, f"{model}.cot.avg_ci_low": acc - 0.05,
                                     f"{model}.cot.avg_ci_high": acc + 0.05})


def test_table6_has_the_dpo_round_and_grpo_rows_with_intervals(tmp_path, tracker):
    d = tmp_path / "eval"
    accs = {"both": 0.2, "dpo": 0.25, "dpo_r2": 0.3, "grpo": 0.4, "cont_sft": 0.15, "rft": 0.35}
    for model, acc in accs.items():
        _eval_metrics(d, model, acc)
    cfg = table.Config(metrics_dir=str(d), models=["both"], out_json=str(tmp_path / "eval.json"),
                       out_md=str(tmp_path / "table2.md"), table6_md=str(tmp_path / "table6.md"))
    assert cfg.table6_models == ["both", "dpo", "dpo_r2", "grpo", "cont_sft", "rft"]  # the default (params.yaml)
    table.run(cfg, tracker)
    rows = [ln for ln in (tmp_path / "table6.md").read_text().splitlines() if ln.endswith("] |")]
    assert rows[:6] == ["| 4 both (SFT) | CoT | 20.0 [15.0, 25.0] | 20.0 [15.0, 25.0] |",
                        "| 6 SFT + DPO | CoT | 25.0 [20.0, 30.0] | 25.0 [20.0, 30.0] |",
                        "| 6b SFT + DPO, round 2 | CoT | 30.0 [25.0, 35.0] | 30.0 [25.0, 35.0] |",
                        "| 7 SFT + GRPO | CoT | 40.0 [35.0, 45.0] | 40.0 [35.0, 45.0] |",
                        "| SFT + more SFT (control) | CoT | 15.0 [10.0, 20.0] | 15.0 [10.0, 20.0] |",
                        "| SFT + RFT (control) | CoT | 35.0 [30.0, 40.0] | 35.0 [30.0, 40.0] |"]
    assert read_json(tmp_path / "eval.json")["grpo.cot.avg_ci_low"] == pytest.approx(0.35)
    (d / "grpo.json").unlink()  # a Table 6 model not evaluated: the stage names the evaluate item to run
    from vlmcot.stage import StageError

    with pytest.raises(StageError, match="evaluate@grpo"):
        table.run(cfg, tracker)
