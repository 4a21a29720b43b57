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
                 lengths_csv=str(tmp_path / "none.csv"), claims_md=str(tmp_path / "none.md"), mlflow_runs=False)
    md, figures = build_report(cfg)
    assert "| synth_chart | 10 | 8 |" in md
    assert "| 4 both (SFT) | CoT | 40.0 | 40.0 |" in md
    assert "Not evaluated yet: dpo, cont_sft, rft" in md
    assert "run `dvc repro claims`" in md and "run `dvc repro rerank`" in md and "run `dvc repro credit`" in md and "run `dvc repro pairs`" in md
    assert figures == []


def test_report_includes_the_claims_table(tmp_path):
    (tmp_path / "claims.md").write_text("# The paper's claims on this run\n\n| claim | verdict |\n|---|---|\n"
                                        "| cot_data_helps_cot | supported |\n")
    cfg = Config(out_dir=str(tmp_path / "rep"), filter_metrics=str(tmp_path / "none.json"),
                 eval_metrics_dir=str(tmp_path / "eval"), plots_dir=str(tmp_path / "plots"),
                 pairs_metrics=str(tmp_path / "none.json"), credit_png=str(tmp_path / "none.png"),
                 lengths_csv=str(tmp_path / "none.csv"), claims_md=str(tmp_path / "claims.md"), mlflow_runs=False)
    md, _ = build_report(cfg)
    assert "## The paper's claims, tested\n\n| claim | verdict |" in md and "| cot_data_helps_cot | supported |" in md
    assert "# The paper's claims on this run" not in md  # the section's own title, not a second document title
