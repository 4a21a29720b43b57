"""Stage `rerank`: curves become a wide CSV for `dvc plots` and flat metric keys with a macro average; beta is
the DPO model's own; rewards come from voting.sequence_reward, and a candidate without a finite one is skipped."""

import json
from pathlib import Path

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


def _lp(id_, values):
    import numpy as np

    from vlmcot.logprobs import ResponseLogprobs

    return ResponseLogprobs(id_, list(range(len(values))), np.asarray(values, dtype=np.float64))


def _cand(qid, s, dataset="da", extracted="1", correct=True):
    from vlmcot.records import Candidate

    return Candidate(id=qid, sample=s, text=f"so {extracted}.\n\n### Answer: {extracted}", extracted=extracted,
                     correct=correct, dataset=dataset)


def test_reward_rows_use_the_sequence_reward_and_skip_non_finite_candidates_by_name():
    from vlmcot.pipeline.rerank import reward_rows
    from vlmcot.voting import sequence_reward

    cands = [_cand("q1", 0), _cand("q1", 1), _cand("q2", 0), _cand("q2", 1)]
    dpo = [_lp("a", [-1.0, -2.0]), _lp("b", [-1.0, float("-inf")]), _lp("c", [-0.5, float("nan")]), _lp("d", [-3.0])]
    sft = [_lp("a", [-2.0, -2.5]), _lp("b", [-1.0, -1.0]), _lp("c", [-0.5, -0.5]), _lp("d", [-3.0, -1.0])]
    rows, unscorable = reward_rows(cands, dpo, sft, beta=0.1)
    assert [(r["id"], r["sample"]) for r in rows] == [("q1", 0)]
    assert rows[0]["reward"] == sequence_reward([-1.0, -2.0], [-2.0, -2.5], 0.1) == pytest.approx(0.15)
    assert (rows[0]["logp_dpo"], rows[0]["logp_sft"], rows[0]["tokens"]) == (-3.0, -4.5, 2)
    assert [u.split(":")[0] for u in unscorable] == ["q1#1", "q2#0", "q2#1"]  # each named
    assert "inf or nan" in unscorable[0] and "logp_dpo -inf" in unscorable[0]
    assert "same length" in unscorable[2]  # the two models scored different tokens


def _rerank_ws(tmp_path, monkeypatch, n_q: int, bad: set[tuple[str, int]], max_bad_rate: float):
    """A rerank run on n_q questions x 4 candidates with scripted log-probs (no model): ``bad`` get -inf."""
    from vlmcot.config import save_resolved
    from vlmcot.io import write_jsonl
    from vlmcot.pipeline import dpo, rerank
    from vlmcot.records import VQARecord

    monkeypatch.chdir(tmp_path)
    recs = [VQARecord(id=f"q{i}", image="x.png", question="?", answer="1", dataset="da", qtype="numeric",
                      split="eval", metric="relaxed_accuracy") for i in range(n_q)]
    cands = [_cand(f"q{i}", s, extracted=str(s % 2), correct=s % 2 == 1) for i in range(n_q) for s in range(4)]
    write_jsonl("eval.jsonl", [r.model_dump(mode="json", exclude_none=True) for r in recs])
    write_jsonl("cands.jsonl", [c.model_dump(mode="json") for c in cands])
    for d in ("dpo", "sft"):
        (tmp_path / d).mkdir()
    params = load_params(str(Path(__file__).parents[2] / "params.yaml"))
    save_resolved(parse_section(dpo.Config, params["dpo"], "dpo"), tmp_path / "dpo" / "vlmcot_config.json")

    def fake_logprobs(cfg, cs, records):
        dpo_out = [_lp(c.id, [float("-inf") if (c.id, c.sample) in bad else -1.0 + 0.5 * (c.sample % 2)])
                   for c in cs]
        return {"dpo": dpo_out, "sft": [_lp(c.id, [-1.0]) for c in cs]}

    monkeypatch.setattr(rerank, "candidate_logprobs", fake_logprobs)
    cfg = Config(candidates="cands.jsonl", records="eval.jsonl", policy="dpo", reference="sft", ns=[1, 2],
                 n_subsets=2, max_bad_rate=max_bad_rate, rewards="out/rewards.jsonl", per_question="out/pq.jsonl",
                 plots_dir="out/plots", metrics="out/rerank.json", summary="out/summary.json")
    return rerank, cfg


def test_a_non_finite_reward_is_skipped_counted_and_the_run_goes_on(tmp_path, monkeypatch, tracker):
    from vlmcot.io import read_json, read_jsonl

    rerank, cfg = _rerank_ws(tmp_path, monkeypatch, n_q=50, bad={("q7", 2)}, max_bad_rate=0.01)  # 1 of 200
    rerank.run(cfg, tracker)
    rows = read_jsonl("out/rewards.jsonl")
    assert len(rows) == 199 and ("q7", 2) not in {(r["id"], r["sample"]) for r in rows}
    m = read_json("out/rerank.json")
    assert m["unscorable"] == 1 and tracker.metrics["unscorable"] == 1
    assert {"da.best_of_n.n2", "da.weighted.n2", "avg.majority.n2"} <= set(m)  # the curves are still computed


def test_too_many_non_finite_rewards_fail_the_stage_naming_the_first(tmp_path, monkeypatch, tracker):
    rerank, cfg = _rerank_ws(tmp_path, monkeypatch, n_q=10, bad={("q1", 0), ("q3", 1)}, max_bad_rate=0.01)
    with pytest.raises(StageError, match=r"2 of 40 candidate rows unusable .*first: q1#0: .*inf or nan"):
        rerank.run(cfg, tracker)
    assert not Path("out/rewards.jsonl").exists()
