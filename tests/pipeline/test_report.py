"""Stage `report`: builds at any point of the pipeline; a missing input becomes a note naming the stage."""

from vlmcot.io import write_json
from vlmcot.pipeline.report import Config, build_report


def test_report_with_partial_inputs(tmp_path):
    write_json(tmp_path / "filter.json", {"synth_chart.total": 10, "synth_chart.kept": 8, "total.total": 10,
                                          "total.kept": 8})
    write_json(tmp_path / "eval/both.json", {"both.cot.synth_chart.relaxed_accuracy": 0.4, "both.cot.avg": 0.4})
    cfg = Config(out_dir=str(tmp_path / "rep"), filter_metrics=str(tmp_path / "filter.json"),
                 eval_metrics_dir=str(tmp_path / "eval"), plots_dir=str(tmp_path / "plots"),
                 pairs_metrics=str(tmp_path / "none.json"), credit_png=str(tmp_path / "none.png"),
                 lengths_csv=str(tmp_path / "none.csv"), claims_md=str(tmp_path / "none.md"),
                 grpo_metrics=str(tmp_path / "metrics/grpo.json"), mlflow_runs=False)
    md, figures = build_report(cfg)
    assert "| synth_chart | 10 | 8 |" in md
    assert "| 4 both (SFT) | CoT | 40.0 | 40.0 |" in md
    assert "Not evaluated yet: dpo, dpo_r2, grpo, cont_sft, rft" in md
    assert "## GRPO training" in md and "metrics/grpo.json is missing (run `dvc repro grpo`)" in md
    assert "run `dvc repro claims`" in md and "run `dvc repro rerank`" in md and "run `dvc repro credit`" in md and "run `dvc repro pairs`" in md
    assert figures == []


def test_report_includes_the_claims_table(tmp_path):
    (tmp_path / "claims.md").write_text("# The paper's claims on this run\n\n| claim | verdict |\n|---|---|\n"
                                        "| cot_data_helps_cot | supported |\n")
    cfg = Config(out_dir=str(tmp_path / "rep"), filter_metrics=str(tmp_path / "none.json"),
                 eval_metrics_dir=str(tmp_path / "eval"), plots_dir=str(tmp_path / "plots"),
                 pairs_metrics=str(tmp_path / "none.json"), credit_png=str(tmp_path / "none.png"),
                 lengths_csv=str(tmp_path / "none.csv"), claims_md=str(tmp_path / "claims.md"),
                 grpo_metrics=str(tmp_path / "none.json"), mlflow_runs=False)
    md, _ = build_report(cfg)
    assert "## The paper's claims, tested\n\n| claim | verdict |" in md and "| cot_data_helps_cot | supported |" in md
    assert "# The paper's claims on this run" not in md  # the section's own title, not a second document title


def test_report_table6_rows_and_grpo_training(tmp_path):
    for model, acc in {"both": 0.2, "dpo_r2": 0.3, "grpo": 0.4}.items():
        write_json(tmp_path / f"eval/{model}.json", {
            f"{model}.cot.x.relaxed_accuracy": acc, f"{model}.cot.x.ci_low": acc - 0.1,
            f"{model}.cot.x.ci_high": acc + 0.1, f"{model}.cot.avg": acc})
    write_json(tmp_path / "grpo.json", {"questions": 1200.0, "global_step": 40.0, "first_accuracy": 0.125,
                                        "last_accuracy": 0.140625, "last_kl": 0.000286, "first_loss": 0.1})
    cfg = Config(out_dir=str(tmp_path / "rep"), filter_metrics=str(tmp_path / "none.json"),
                 eval_metrics_dir=str(tmp_path / "eval"), plots_dir=str(tmp_path / "plots"),
                 pairs_metrics=str(tmp_path / "none.json"), credit_png=str(tmp_path / "none.png"),
                 lengths_csv=str(tmp_path / "none.csv"), claims_md=str(tmp_path / "none.md"),
                 grpo_metrics=str(tmp_path / "grpo.json"), mlflow_runs=False)
    md, _ = build_report(cfg)
    table6 = md.split("## Table 6", 1)[1]
    rows = ["| 4 both (SFT) | CoT | 20.0 [10.0, 30.0] |", "| 6b SFT + DPO, round 2 | CoT | 30.0 [20.0, 40.0] |",
            "| 7 SFT + GRPO | CoT | 40.0 [30.0, 50.0] |"]
    assert all(r in table6 for r in rows) and sorted(rows, key=table6.index) == rows  # Table 6's order
    assert "Not evaluated yet: dpo, cont_sft, rft" in table6
    grpo = md.split("## GRPO training", 1)[1]
    assert "| questions | global_step | first_accuracy | last_accuracy | last_kl |" in grpo
    assert "| 1200 | 40 | 0.125 | 0.1406 | 0.000286 |" in grpo and "first_loss" not in grpo
