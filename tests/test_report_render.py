"""Report pieces: Table 1-style counts, model tables from per-model metrics, curve and length figures."""

from vlmcot.report_render import counts_table, model_table, plot_lengths, plot_rerank


def test_counts_table_orders_datasets_then_total():
    md = counts_table({"b.kept": 3, "a.kept": 1, "total.kept": 4, "a.kept_rate": 0.5}, [("kept", "kept"),
                                                                                    ("kept_rate", "rate")])
    lines = md.splitlines()
    assert lines[0] == "| dataset | kept | rate |"
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["a", "b", "total"]
    assert "| a | 1 | 0.500 |" in md and "| b | 3 | - |" in md


def test_model_table_labels_and_order():
    per = {"both": {"both.cot.x.relaxed_accuracy": 0.5, "both.cot.avg": 0.5},
           "dpo": {"dpo.cot.x.relaxed_accuracy": 0.75, "dpo.cot.avg": 0.75}}
    md = model_table(per, ["both", "dpo"], {"both": "SFT", "dpo": "DPO"})
    rows = [ln for ln in md.splitlines() if ln.startswith(("| SFT", "| DPO"))]
    assert rows == ["| SFT | CoT | 50.0 | 50.0 |", "| DPO | CoT | 75.0 | 75.0 |"]


def test_figures(tmp_path):
    (tmp_path / "r.csv").write_text("n,best_of_n,majority,oracle,weighted\n1,0.5,0.5,0.5,0.5\n2,0.6,0.5,0.7,0.6\n")
    (tmp_path / "l.csv").write_text("length,cot,direct\n0,1,9\n5,3,0\n")
    assert plot_rerank(tmp_path / "r.csv", tmp_path / "r.png", "t").stat().st_size > 1000
    # the GRPO verifier's columns (#16) are drawn beside the DPO reward's
    (tmp_path / "g.csv").write_text("n,best_of_n,best_of_n.grpo,majority,weighted,weighted.grpo\n"
                                    "1,0.5,0.5,0.5,0.5,0.5\n2,0.6,0.4,0.5,0.6,0.7\n")
    assert plot_rerank(tmp_path / "g.csv", tmp_path / "g.png", "t").stat().st_size > 1000
    assert plot_lengths(tmp_path / "l.csv", tmp_path / "l.png").stat().st_size > 1000
