"""Stage `rerank`: curves become a wide CSV for `dvc plots` and flat metric keys with a macro average; beta is
the verifier policy's own; rewards come from voting.sequence_reward, and a candidate without a finite one is
skipped. Several verifiers: the first keeps the plain column names and the numbers a one-verifier run gives,
each other adds its own columns from its own beta and log-probs, and a model two of them share is scored once."""

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


@pytest.mark.parametrize("key", ["policy", "reference"])
def test_the_old_policy_and_reference_keys_name_what_replaced_them(key):
    params = load_params("params.yaml")["rerank"]
    assert key not in params and key not in Config.model_fields
    with pytest.raises(ConfigError, match=rf"rerank.{key} was replaced by rerank.verifiers.*"
                                          r"rerank.verifiers.<name>.policy"):
        parse_section(Config, {**params, key: "models/dpo"}, "rerank")


@pytest.mark.parametrize("verifiers,match", [({}, "at least one verifier"),
                                             ({"dpo.r2": {"policy": "a", "reference": "b"}}, "no '.'"),
                                             ({"dpo": {"policy": "a"}}, "reference"),
                                             ({"dpo": {"policy": "a", "reference": "b", "beta": 1}}, "beta")])
def test_bad_verifiers_are_refused_naming_the_key(verifiers, match):
    params = load_params("params.yaml")["rerank"]
    with pytest.raises(ConfigError, match=rf"rerank.verifiers.*{match}|{match}.*rerank.verifiers"):
        parse_section(Config, {**params, "verifiers": verifiers}, "rerank")


def test_the_embedded_verifiers_are_dpo_first_then_grpo_and_dpo_round_2():
    cfg = parse_section(Config, load_params("params.yaml")["rerank"], "rerank")
    assert cfg.primary == "dpo" and list(cfg.verifiers) == ["dpo", "grpo", "dpo_r2"]
    assert (cfg.verifiers["grpo"].policy, cfg.verifiers["grpo"].reference) == ("models/grpo", "models/sft/both")
    # a DPO round's reference is the round before it
    assert (cfg.verifiers["dpo_r2"].policy, cfg.verifiers["dpo_r2"].reference) == ("models/dpo_rounds/r2", "models/dpo")


def test_per_question_rows_average_to_the_curves_last_point():
    """The claims stage bootstraps these rows: per dataset their mean must be the curve at the largest N,
    also where N is below a question's candidate count (random subsets, seeded per question), for the
    second verifier's columns too."""
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
                             "reward": float((q * 7 + s * 3) % 5), "reward.grpo": float((q + s * 4) % 3)})
    cfg = Config(ns=[1, 2, 5], n_subsets=4, verifiers={"dpo": {"policy": "p", "reference": "r"},
                                                       "grpo": {"policy": "g", "reference": "r"}})
    curves = curves_by_dataset(cfg, rows, recs)
    pq = per_question_rows(cfg, rows, recs)
    assert len(pq) == 12 and {r["n"] for r in pq} == {5}
    columns = ("majority", "best_of_n", "weighted", "oracle", "best_of_n.grpo", "weighted.grpo")
    for ds in ("da", "db"):
        assert set(curves[ds]) == set(columns)
        mine = [r for r in pq if r["dataset"] == ds]
        for m in columns:
            assert sum(r[m] for r in mine) / len(mine) == pytest.approx(curves[ds][m][5], abs=1e-6)
    assert any(0 < r["majority"] < 1 for r in pq)  # subsets: a share, not only 0/1
    assert any(r["best_of_n"] != r["best_of_n.grpo"] for r in pq)  # the two rewards pick differently


def _lp(id_, values):
    import numpy as np

    from vlmcot.logprobs import ResponseLogprobs

    return ResponseLogprobs(id_, list(range(len(values))), np.asarray(values, dtype=np.float64))


def _cand(qid, s, dataset="da", extracted="1", correct=True):
    from vlmcot.records import Candidate

    return Candidate(id=qid, sample=s, text=f"so {extracted}.\n\n### Answer: {extracted}", extracted=extracted,
                     correct=correct, dataset=dataset)


def test_reward_rows_use_the_sequence_reward_and_skip_non_finite_candidates_by_name():
    from vlmcot.pipeline.rerank import VerifierLogprobs, reward_rows
    from vlmcot.voting import sequence_reward

    cands = [_cand("q1", 0), _cand("q1", 1), _cand("q2", 0), _cand("q2", 1)]
    dpo = [_lp("a", [-1.0, -2.0]), _lp("b", [-1.0, float("-inf")]), _lp("c", [-0.5, float("nan")]), _lp("d", [-3.0])]
    sft = [_lp("a", [-2.0, -2.5]), _lp("b", [-1.0, -1.0]), _lp("c", [-0.5, -0.5]), _lp("d", [-3.0, -1.0])]
    rows, unscorable = reward_rows(cands, {"dpo": VerifierLogprobs(dpo, sft, 0.1)})
    assert [(r["id"], r["sample"]) for r in rows] == [("q1", 0)]
    assert rows[0]["reward"] == sequence_reward([-1.0, -2.0], [-2.0, -2.5], 0.1) == pytest.approx(0.15)
    assert (rows[0]["logp_dpo"], rows[0]["logp_sft"], rows[0]["tokens"]) == (-3.0, -4.5, 2)
    assert [u.split(":")[0] for u in unscorable] == ["q1#1", "q2#0", "q2#1"]  # each named
    assert "verifier dpo: " in unscorable[0] and "inf or nan" in unscorable[0] and "logp policy -inf" in unscorable[0]
    assert "same length" in unscorable[2]  # the two models scored different tokens


def test_a_second_verifier_gets_its_own_columns_and_a_candidate_it_cannot_score_is_left_out_for_all():
    """reward.<v> is beta_v * (sum log pi_v - sum log pi_ref_v), by hand; the primary's fields are unchanged;
    a candidate with a non-finite log-prob under the second verifier only is dropped for both (all methods
    vote over the same candidates) and named with that verifier."""
    from vlmcot.pipeline.rerank import VerifierLogprobs, reward_rows

    cands = [_cand("q1", 0), _cand("q1", 1), _cand("q1", 2)]
    dpo = [_lp("a", [-1.0, -2.0]), _lp("b", [-1.5, -1.0]), _lp("c", [-1.0, -1.0])]
    sft = [_lp("a", [-2.0, -2.5]), _lp("b", [-1.0, -1.0]), _lp("c", [-1.0, -1.0])]
    grpo = [_lp("a", [-0.5, -0.25]), _lp("b", [-4.0, -1.0]), _lp("c", [float("-inf"), -1.0])]
    rows, unscorable = reward_rows(cands, {"dpo": VerifierLogprobs(dpo, sft, 0.1),
                                           "grpo": VerifierLogprobs(grpo, sft, 0.04)})
    one, _ = reward_rows(cands[:2], {"dpo": VerifierLogprobs(dpo[:2], sft[:2], 0.1)})
    assert [(r["id"], r["sample"]) for r in rows] == [("q1", 0), ("q1", 1)]
    assert unscorable and unscorable[0].startswith("q1#2: verifier grpo: ") and len(unscorable) == 1
    assert [{k: v for k, v in r.items() if "." not in k} for r in rows] == one  # the primary's fields as before
    # by hand: 0.04 * ((-0.5 - 0.25) - (-2.0 - 2.5)) and 0.04 * ((-4.0 - 1.0) - (-1.0 - 1.0))
    assert rows[0]["reward.grpo"] == pytest.approx(0.04 * 3.75) and rows[1]["reward.grpo"] == pytest.approx(-0.12)
    assert (rows[0]["logp_policy.grpo"], rows[0]["logp_reference.grpo"]) == (-0.75, -4.5)


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
    cfg = Config(candidates="cands.jsonl", records="eval.jsonl", verifiers={"dpo": {"policy": "dpo", "reference": "sft"}},
                 ns=[1, 2], n_subsets=2, max_bad_rate=max_bad_rate, rewards="out/rewards.jsonl",
                 per_question="out/pq.jsonl", plots_dir="out/plots", metrics="out/rerank.json",
                 summary="out/summary.json")
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


def _two_verifier_ws(tmp_path, monkeypatch, n_q: int = 12):
    """Candidates of n_q questions x 4 samples and three stand-in models whose per-token log-probs depend on
    the model and the sample (no weights: load_model_and_processor and response_logprobs are stubbed, the
    stage code between them is real). Returns the stage module and the model loads it made."""
    import numpy as np

    from vlmcot.config import save_resolved
    from vlmcot.io import write_jsonl
    from vlmcot.logprobs import ResponseLogprobs
    from vlmcot.pipeline import dpo, grpo, rerank
    from vlmcot.records import VQARecord

    monkeypatch.chdir(tmp_path)
    recs = [VQARecord(id=f"q{i}", image="x.png", question="?", answer="1", dataset=("da", "db")[i % 2],
                      qtype="numeric", split="eval", metric="relaxed_accuracy") for i in range(n_q)]
    cands = [_cand(f"q{i}", s, dataset=("da", "db")[i % 2], extracted=str((i + s) % 3), correct=(i + s) % 3 == 1)
             for i in range(n_q) for s in range(4)]
    write_jsonl("eval.jsonl", [r.model_dump(mode="json", exclude_none=True) for r in recs])
    write_jsonl("cands.jsonl", [c.model_dump(mode="json") for c in cands])
    params = load_params(str(Path(__file__).parents[2] / "params.yaml"))
    for d in ("dpo", "grpo", "sft"):
        (tmp_path / d).mkdir()
    # what the dpo and grpo stages save beside their models (train.beta 0.1 and 0.04)
    save_resolved(parse_section(dpo.Config, params["dpo"], "dpo"), tmp_path / "dpo" / "vlmcot_config.json")
    save_resolved(parse_section(grpo.Config, params["grpo"], "grpo"), tmp_path / "grpo" / "vlmcot_config.json")

    def logp(model: str, qid: str, s: int) -> list[float]:
        i = int(qid[1:])
        if model == "sft":
            return [-1.0, -1.5]
        if model == "dpo":  # prefers some samples, by question
            return [-1.0 + 0.3 * ((i * 5 + s * 3) % 4), -1.5]
        return [-1.0, -1.5 + 0.7 * ((i + s + 1) % 3)]  # grpo: highest on the right answer ((i + s) % 3 == 1)

    loads = []

    def fake_load(path, dtype, device):
        loads.append(path)
        return Path(path).name, None

    def fake_response_logprobs(model, processor, reqs, **kw):
        out = []
        for r in reqs:
            qid, s = r.id.split("#")
            out.append(ResponseLogprobs(r.id, [5, 6], np.asarray(logp(model, qid, int(s)), dtype=np.float64)))
        return out

    monkeypatch.setattr("vlmcot.models.load_model_and_processor", fake_load)
    monkeypatch.setattr("vlmcot.logprobs.response_logprobs", fake_response_logprobs)
    return rerank, loads, logp


def _run(rerank, verifiers: dict, out: str, tracker):
    cfg = Config(candidates="cands.jsonl", records="eval.jsonl", verifiers=verifiers, ns=[1, 2, 4], n_subsets=3,
                 rewards=f"{out}/rewards.jsonl", per_question=f"{out}/pq.jsonl", plots_dir=f"{out}/plots",
                 metrics=f"{out}/rerank.json", summary=f"{out}/summary.json")
    rerank.run(cfg, tracker)
    return cfg


def test_two_verifiers_keep_the_primarys_numbers_add_their_own_and_score_a_shared_model_once(
        tmp_path, monkeypatch, tracker):
    import csv

    from tests.conftest import FakeTracker
    from vlmcot.io import read_json, read_jsonl
    from vlmcot.voting import best_of_n

    rerank, loads, logp = _two_verifier_ws(tmp_path, monkeypatch)
    _run(rerank, {"dpo": {"policy": "dpo", "reference": "sft"}}, "one", FakeTracker())
    assert loads == ["dpo", "sft"]
    loads.clear()
    # the shared reference spelt two ways: still one model, scored once
    _run(rerank, {"dpo": {"policy": "dpo", "reference": "sft"}, "grpo": {"policy": "grpo", "reference": "sft/"}},
         "two", tracker)
    assert loads == ["dpo", "sft", "grpo"]

    # the primary's columns, metrics, per-question values and rewards are exactly a one-verifier run's
    for ds in ("da", "db"):
        one = list(csv.DictReader(open(f"one/plots/rerank_{ds}.csv")))
        two = list(csv.DictReader(open(f"two/plots/rerank_{ds}.csv")))
        assert list(two[0]) == ["n", "best_of_n", "best_of_n.grpo", "majority", "oracle", "weighted", "weighted.grpo"]
        assert [{k: r[k] for k in one[0]} for r in two] == one  # the CSV's own strings: byte-identical values
    m1, m2 = read_json("one/rerank.json"), read_json("two/rerank.json")
    assert {k: v for k, v in m2.items() if ".grpo" not in k} == m1
    assert {"da.best_of_n.grpo.n4", "avg.weighted.grpo.n4", "db.reward_gap.grpo"} <= set(m2)
    pq1, pq2 = read_jsonl("one/pq.jsonl"), read_jsonl("two/pq.jsonl")
    assert [{k: r[k] for k in pq1[0]} for r in pq2] == pq1
    assert {"best_of_n.grpo", "weighted.grpo"} <= set(pq2[0])
    r1, r2 = read_jsonl("one/rewards.jsonl"), read_jsonl("two/rewards.jsonl")
    assert [{k: r[k] for k in r1[0]} for r in r2] == r1

    # the second verifier's reward: its own beta (grpo.train.beta 0.04) times its own log-ratio, by hand
    assert tracker.metrics["beta"] == 0.1 and tracker.metrics["beta.grpo"] == 0.04
    for r in r2:
        by_hand = 0.04 * (sum(logp("grpo", r["id"], r["sample"])) - sum(logp("sft", r["id"], r["sample"])))
        assert r["reward.grpo"] == pytest.approx(by_hand, abs=1e-12)
    assert len({r["reward.grpo"] for r in r2}) == 3 and len({r["reward"] for r in r2}) == 4
    # ... and its best-of-N at N = 4 (all candidates: one subset) picks by that reward, per question
    for ds in ("da", "db"):
        rows = sorted((r for r in r2 if r["dataset"] == ds), key=lambda r: (r["id"], r["sample"]))
        hits = []
        for qid in sorted({r["id"] for r in rows}):
            q = [r for r in rows if r["id"] == qid]
            pick = best_of_n([r["extracted"] for r in q], [r["reward.grpo"] for r in q])
            hits.append(pick == "1")
        assert m2[f"{ds}.best_of_n.grpo.n4"] == pytest.approx(sum(hits) / len(hits))
    assert m2["avg.best_of_n.grpo.n4"] == 1.0 > m2["avg.best_of_n.n4"]  # it does pick by its own reward
    # the headline stays the primary verifier's (the others are in the full metrics and the curves)
    assert read_json("two/summary.json") == read_json("one/summary.json")


def test_a_verifiers_missing_model_is_named_with_its_key(tmp_path, monkeypatch, tracker):
    rerank, loads, _ = _two_verifier_ws(tmp_path, monkeypatch, n_q=2)
    with pytest.raises(StageError, match=r"model not found: r2 \(rerank.verifiers.dpo_r2.policy"):
        _run(rerank, {"dpo": {"policy": "dpo", "reference": "sft"}, "dpo_r2": {"policy": "r2", "reference": "dpo"}},
             "out", tracker)
    assert loads == []  # before any model loads
