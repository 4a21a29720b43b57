"""Stage `rerank`: curves become a wide CSV for `dvc plots` and flat metric keys with a macro average."""

import json

import pytest

from vlmcot.config import ConfigError, load_params, parse_section
from vlmcot.pipeline.rerank import Config, flat_metrics, policy_beta, write_curve_csv
from vlmcot.stage import StageError


def test_csv_and_flat_metrics(tmp_path):
    curves = {"a": {"majority": {1: 0.5, 2: 0.6}, "best_of_n": {1: 0.5, 2: 0.7}},
              "b": {"majority": {1: 0.1, 2: 0.2}, "best_of_n": {1: 0.1, 2: 0.3}}}
    write_curve_csv(tmp_path / "c.csv", curves["a"])
    assert (tmp_path / "c.csv").read_text().splitlines() == ["n,best_of_n,majority", "1,0.500000,0.500000",
                                                             "2,0.700000,0.600000"]
    m = flat_metrics(curves)
    assert m["a.best_of_n.n2"] == 0.7 and m["b.majority.n1"] == 0.1
    assert abs(m["avg.best_of_n.n2"] - 0.5) < 1e-9 and abs(m["avg.majority.n2"] - 0.4) < 1e-9


def test_beta_is_the_dpo_models_own(tmp_path):
    """The reward's beta is read from the resolved config dpo saved beside the model, not restated."""
    from vlmcot.config import save_resolved
    from vlmcot.pipeline import dpo

    params = load_params("params.yaml")
    cfg = parse_section(dpo.Config, {**params["dpo"], "train": {**params["dpo"]["train"], "beta": 0.3}}, "dpo")
    save_resolved(cfg, tmp_path / "vlmcot_config.json")  # what the dpo stage writes into out_dir
    assert policy_beta(tmp_path) == 0.3


def test_beta_without_a_saved_dpo_config_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="vlmcot_config.json not found"):
        policy_beta(tmp_path)
    (tmp_path / "vlmcot_config.json").write_text(json.dumps({"train": {}}))
    with pytest.raises(StageError, match="no train.beta"):
        policy_beta(tmp_path)


def test_rerank_beta_key_is_refused_with_the_reason():
    params = load_params("params.yaml")["rerank"]
    assert "beta" not in params and "beta" not in Config.model_fields
    with pytest.raises(ConfigError, match="rerank.beta was removed.*dpo.train.beta"):
        parse_section(Config, {**params, "beta": 0.1}, "rerank")


def test_per_question_rows_average_to_the_curves_last_point():
    """The claims stage bootstraps these rows: per dataset their mean must be the curve at the largest N,
    also where N is below a question's candidate count (random subsets, seeded per question)."""
    from vlmcot.pipeline.rerank import curves_by_dataset, per_question_rows
    from vlmcot.records import VQARecord

    recs, rows = {}, []
    for ds in ("da", "db"):
        for q in range(6):
            qid = f"{ds}-{q}"
            recs[qid] = VQARecord(id=qid, image="x.png", question="?", answer="1", dataset=ds, qtype="numeric",
                                  split="eval", metric="relaxed_accuracy")
            for s in range(6 if q % 2 else 5):  # 5 or 6 candidates: N = 5 draws subsets of the 6
                rows.append({"id": qid, "sample": s, "dataset": ds, "extracted": str((q + s) % 3),
                             "reward": float((q * 7 + s * 3) % 5)})
    cfg = Config(ns=[1, 2, 5], n_subsets=4)
    curves = curves_by_dataset(cfg, rows, recs)
    pq = per_question_rows(cfg, rows, recs)
    assert len(pq) == 12 and {r["n"] for r in pq} == {5}
    for ds in ("da", "db"):
        mine = [r for r in pq if r["dataset"] == ds]
        for m in ("majority", "best_of_n", "weighted", "oracle"):
            assert sum(r[m] for r in mine) / len(mine) == pytest.approx(curves[ds][m][5], abs=1e-6)
    assert any(0 < r["majority"] < 1 for r in pq)  # subsets: a share, not only 0/1
