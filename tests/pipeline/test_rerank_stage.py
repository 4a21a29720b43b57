"""Stage `rerank`: curves become a wide CSV for `dvc plots` and flat metric keys with a macro average."""

from vlmcot.pipeline.rerank import flat_metrics, write_curve_csv


def test_csv_and_flat_metrics(tmp_path):
    curves = {"a": {"majority": {1: 0.5, 2: 0.6}, "best_of_n": {1: 0.5, 2: 0.7}},
              "b": {"majority": {1: 0.1, 2: 0.2}, "best_of_n": {1: 0.1, 2: 0.3}}}
    write_curve_csv(tmp_path / "c.csv", curves["a"])
    assert (tmp_path / "c.csv").read_text().splitlines() == ["n,best_of_n,majority", "1,0.500000,0.500000",
                                                             "2,0.700000,0.600000"]
    m = flat_metrics(curves)
    assert m["a.best_of_n.n2"] == 0.7 and m["b.majority.n1"] == 0.1
    assert abs(m["avg.best_of_n.n2"] - 0.5) < 1e-9 and abs(m["avg.majority.n2"] - 0.4) < 1e-9
