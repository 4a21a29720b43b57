"""Headline numbers for `dvc metrics show`: Table 2/6 cells in %, rerank at the largest N."""

from vlmcot.summary import eval_summary, rerank_summary


def test_eval_summary_is_the_tables_cells_in_percent():
    m = {"both.direct.avg": 0.178, "both.cot.avg": 0.135, "both.cot.synth_doc.anls": 0.18}
    assert eval_summary(m, "both") == {"direct": 17.8, "cot": 13.5}


def test_rerank_summary_takes_the_largest_n():
    m = {"avg.majority.n2": 0.1, "avg.majority.n16": 0.125, "avg.best_of_n.n16": 0.1, "avg.weighted.n16": 0.13333,
         "avg.oracle.n16": 0.58, "avg.weighted.n4": 0.11, "synth_chart.majority.n16": 0.2}
    assert rerank_summary(m) == {"n": 16, "majority": 12.5, "best_of_n": 10.0, "weighted": 13.3}
    assert rerank_summary({}) == {}
